from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from maskline.services.ingest.decode import InvalidImage, decode
from tests.e2e.test_bad_input import pixel_bomb_png

pytestmark = pytest.mark.unit
FORMATS = frozenset({"PNG", "JPEG"})


def encode(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def run(data: bytes, max_pixels: int = 10_000_000) -> object:
    return decode(data, allowed_formats=FORMATS, max_pixels=max_pixels, max_side=8192)


def test_png_is_normalised_to_rgb_png() -> None:
    image = Image.new("L", (30, 20), 200)
    out = run(encode(image))
    decoded = Image.open(io.BytesIO(out.png))  # type: ignore[attr-defined]
    assert decoded.mode == "RGB" and decoded.size == (30, 20)
    assert (out.width, out.height, out.original_format) == (30, 20, "PNG")  # type: ignore[attr-defined]


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    out = run(encode(image, "JPEG", exif=exif))
    assert (out.width, out.height) == (10, 40)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"just some text, not an image", "unsupported_format"),
        (b"", "unsupported_format"),
        (encode(Image.new("RGB", (8, 8)), "GIF"), "unsupported_format"),
        (encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))[:300], "corrupt_image"),
        (pixel_bomb_png(), "image_too_large"),
    ],
    ids=["text", "empty", "gif-not-allowed", "truncated", "pixel-bomb"],
)
def test_bad_input_is_refused_with_a_reason(data: bytes, code: str) -> None:
    with pytest.raises(InvalidImage) as err:
        run(data)
    assert err.value.code == code
    assert err.value.reason


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(InvalidImage, match="100x100"):
        run(encode(Image.new("RGB", (100, 100))), max_pixels=5000)


def test_an_upright_rgb_png_is_kept_as_uploaded() -> None:
    out = run(encode(Image.new("RGB", (12, 7), (1, 2, 3))))
    assert out.png is None  # type: ignore[attr-defined]
    assert (out.width, out.height) == (12, 7)  # type: ignore[attr-defined]
