"""Decode and normalise an uploaded image with Pillow, refusing anything unsafe or broken."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from maskline.shared.errors import PermanentError

ORIENTATION = 0x0112


class InvalidImage(PermanentError):
    """The upload is not an image we accept: unknown format, truncated, or too large."""

    code = "invalid_image"


@dataclass(frozen=True)
class DecodedImage:
    png: bytes | None
    """The normalised PNG, or None when the upload already is one (RGB PNG, upright): keep it as is."""
    width: int
    height: int
    original_format: str


def decode(data: bytes, *, allowed_formats: frozenset[str], max_pixels: int, max_side: int) -> DecodedImage:
    """Decode `data`, apply EXIF orientation, convert to RGB and re-encode as PNG."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=sorted(allowed_formats))
            fmt = image.format or "unknown"
            width, height = image.size
            # Check the header before decoding a single pixel: a 50 kB PNG can claim 100k x 100k.
            if width * height > max_pixels or max(width, height) > max_side:
                raise InvalidImage(
                    f"image is {width}x{height} pixels; the limit is {max_pixels} pixels and {max_side} per side",
                    code="image_too_large",
                )
            image.load()
    except InvalidImage:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImage(
            f"not an image in an accepted format ({', '.join(sorted(allowed_formats))})", code="unsupported_format"
        ) from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"decompression bomb refused: {exc}", code="image_too_large") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"image data is corrupt or truncated: {exc}", code="corrupt_image") from exc
    if fmt == "PNG" and image.mode == "RGB" and image.getexif().get(ORIENTATION, 1) == 1:
        return DecodedImage(png=None, width=width, height=height, original_format=fmt)
    upright = ImageOps.exif_transpose(image).convert("RGB")
    out = io.BytesIO()
    upright.save(out, format="PNG", compress_level=1)
    return DecodedImage(png=out.getvalue(), width=upright.width, height=upright.height, original_format=fmt)
