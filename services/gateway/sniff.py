"""Cheap header-only checks on an upload, so obvious refusals answer synchronously (415 / 413).

The full decode (truncation, corrupt data) stays in ingest, which owns image validation.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from maskline.services.gateway.errors import PayloadTooLarge, UnsupportedMedia


def check_image_header(data: bytes, *, allowed_formats: frozenset[str], max_pixels: int) -> str:
    """Return the image format, or raise for a non-image or an oversized one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(allowed_formats))
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image is over the limit of {max_pixels} pixels: {exc}", code="image_too_large") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedMedia(f"upload is not an image in an accepted format ({', '.join(sorted(allowed_formats))})") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}", code="image_too_large"
        )
    return image.format or "unknown"
