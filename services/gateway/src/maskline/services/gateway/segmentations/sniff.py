"""Cheap header-only checks on an upload, so obvious refusals answer synchronously (415 / 413 / 422).

The full decode (truncated pixel data) stays in ingest, which owns image validation; both name
the same causes through `shared/images/checks.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from maskline.services.gateway.core.errors import PayloadTooLarge, Unprocessable, UnsupportedMedia
from maskline.shared.images.checks import CorruptImage, ImageTooLarge, Limits, UnsupportedFormat, open_checked, orientation

#: What `check_image_header` refuses with (the OpenAPI document of the routes that take an image).
REFUSALS = (
    UnsupportedMedia.coded(UnsupportedFormat.code)
    + Unprocessable.coded(CorruptImage.code)
    + PayloadTooLarge.coded(ImageTooLarge.code)
)


#: EXIF orientations that turn the image a quarter: its upright width is the stored height.
QUARTER_TURNS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class Header:
    format: str
    width: int
    """Upright (after the EXIF orientation ingest applies): what prompt coordinates refer to."""
    height: int


def check_image_header(data: bytes, *, allowed_formats: frozenset[str], max_pixels: int) -> Header:
    """The image's format and size, or the refusal that names the real cause and the configured limit."""
    try:
        image = open_checked(data, Limits(allowed=allowed_formats, max_pixels=max_pixels))
    except UnsupportedFormat as exc:
        raise UnsupportedMedia(str(exc), code=exc.code) from exc
    except CorruptImage as exc:
        raise Unprocessable(str(exc), code=exc.code) from exc
    except ImageTooLarge as exc:
        raise PayloadTooLarge(str(exc), code=exc.code) from exc
    try:
        turned = orientation(image, data) in QUARTER_TURNS
    except (OSError, SyntaxError, ValueError, EOFError):  # damaged EXIF: ingest refuses the image with the reason
        turned = False
    width, height = (image.height, image.width) if turned else (image.width, image.height)
    return Header(format=image.format or "unknown", width=width, height=height)
