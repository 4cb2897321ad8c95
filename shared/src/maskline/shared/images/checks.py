"""Read an uploaded image safely: name the real cause of a refusal, and bring every accepted image
to 8-bit RGB without clipping.

Accepted (Pillow reads them without external programs): PNG, JPEG, WEBP, TIFF, BMP and GIF (its
first frame). Anything else is refused as unsupported, with what it looks like when the magic
bytes tell (PDF, SVG, HEIC...). A file whose magic says an accepted format but which Pillow cannot
read is *corrupt*, not unsupported. Pixel limits are checked from the header, before a single
pixel is decoded, and the message quotes the configured limit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
#: Magic bytes → format. Accepted ones first; the others only to name what was sent.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"WEBP", 8, "WEBP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"BM", 0, "BMP"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"%PDF", 0, "PDF"),
    (b"<svg", 0, "SVG"),
    (b"<?xml", 0, "XML/SVG"),
    (b"ftypheic", 4, "HEIC"),
    (b"ftypavif", 4, "AVIF"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
    (b"8BPS", 0, "PSD"),
)
ORIENTATION = 0x0112
#: Our limits (checked from the header in `open_checked`, quoted in the refusal) replace Pillow's
#: global decompression-bomb guard, which would refuse with its own number instead of ours.
Image.MAX_IMAGE_PIXELS = None


class ImageRefused(ValueError):
    """Base: `code` is the stable reason code, the message the human one."""

    code = "invalid_image"


class UnsupportedFormat(ImageRefused):
    code = "unsupported_format"


class CorruptImage(ImageRefused):
    code = "corrupt_image"


class ImageTooLarge(ImageRefused):
    code = "image_too_large"


@dataclass(frozen=True)
class Limits:
    allowed: frozenset[str]
    max_pixels: int
    max_side: int = 1 << 30


def sniff(data: bytes) -> str | None:
    """The format the magic bytes announce, or None."""
    head = data[:32]
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def formats(text: str) -> frozenset[str]:
    """A configured list (`PNG,JPEG,...`) as a set, limited to what Pillow reads safely here."""
    return frozenset(f.strip().upper() for f in text.split(",") if f.strip().upper() in ACCEPTED)


def open_checked(data: bytes, limits: Limits) -> Image.Image:
    """Open (header only) and check format and size; raise the refusal that names the real cause."""
    kind = sniff(data)
    allowed = ", ".join(sorted(limits.allowed))
    if kind is None or kind not in limits.allowed:
        what = f"a {kind} file" if kind else "not an image we recognise"
        raise UnsupportedFormat(f"unsupported format: the upload is {what}; accepted: {allowed}")
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"corrupt {kind}: {_cause(exc)}") from exc
    width, height = image.size
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels} pixels"
            + (f" and {limits.max_side} per side" if limits.max_side < 1 << 30 else "")
        )
    return image


def _cause(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("cannot identify image file <_io.BytesIO object at", "unreadable data (").split(" at 0x")[0]


def decode_rgb8(data: bytes, limits: Limits) -> tuple[NDArray[np.uint8], str]:
    """H x W x 3 uint8, upright (EXIF orientation), with deeper images scaled to 8 bits; and the format."""
    image = open_checked(data, limits)
    kind = image.format or "unknown"
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"corrupt {kind}: image data is truncated or damaged ({_cause(exc)})") from exc
    return to_rgb8(image), kind


def to_rgb8(image: Image.Image) -> NDArray[np.uint8]:
    """8-bit RGB without clipping: 16-bit samples are scaled (65535 → 255), floats by their range."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        raw = np.asarray(image).astype(np.float64)
        scale = 257.0 if raw.max(initial=0) <= 65535 else raw.max() / 255.0
        gray = np.clip(np.rint(raw / max(scale, 1e-12)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if image.mode == "F":
        raw = np.asarray(image, dtype=np.float64)
        low, high = float(raw.min(initial=0.0)), float(raw.max(initial=1.0))
        gray = np.clip(np.rint((raw - low) / max(high - low, 1e-12) * 255), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def orientation(image: Image.Image, data: bytes) -> int:
    """The EXIF orientation tag (1: upright). A PNG without an `eXIf` chunk is upright: asking Pillow
    would decode every pixel of it just to look for the chunk (0.4 s on 36 megapixels)."""
    if image.format == "PNG" and b"eXIf" not in data:
        return 1
    return int(image.getexif().get(ORIENTATION, 1))


def working_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down, aspect kept, so that neither side exceeds `max_side`."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def request_pixels(width: int, height: int, variants: int, working_max_side: int) -> int:
    """What one request costs in pixels: the image, plus each TTA variant at the working size."""
    work_w, work_h = working_size(width, height, working_max_side)
    return width * height + variants * work_w * work_h


class RequestTooLarge(ImageRefused):
    code = "request_too_large"


def check_pixel_budget(width: int, height: int, variants: int, working_max_side: int, limit: int) -> None:
    """The one pixel budget of a request (the gateway answers 413 with it, ingest fails a bus job):
    raise `RequestTooLarge` naming the cost when the image and its TTA variants are over `limit`."""
    cost = request_pixels(width, height, variants, working_max_side)
    if cost > limit:
        raise RequestTooLarge(
            f"this request costs {cost} pixels (the image and {variants} TTA variants at most "
            f"{working_max_side} px per side); the limit is {limit}"
        )
