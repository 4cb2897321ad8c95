"""Ingest's image checks: the real cause of a refusal, the configured limits, deep images scaled
to 8 bits (not clipped), GIF's first frame, and a bounded working copy of large images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maskline.contracts.formats import PIXELS
from maskline.contracts.model_v1 import Preprocessing
from maskline.services.ingest.decode import DecodedImage, InvalidImage, decode
from maskline.shared.images.checks import ACCEPTED, Limits
from maskline.shared.images.codec import load_bgr, prepare, prepare_pixels
from tests.e2e.test_bad_input import pixel_bomb_png

pytestmark = pytest.mark.unit
NOISE = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
LIMITS = Limits(allowed=frozenset(ACCEPTED), max_pixels=10_000_000, max_side=8192)


def encode(image: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def run(data: bytes, max_pixels: int = 10_000_000, working: int = 1024, allowed: tuple[str, ...] = ACCEPTED) -> DecodedImage:
    return decode(data, limits=Limits(allowed=frozenset(allowed), max_pixels=max_pixels, max_side=8192), working_max_side=working)


def pixels(out: DecodedImage, original: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(out.png if out.png is not None else original)).convert("RGB"))


def test_a_grey_png_is_kept_and_an_rgba_png_is_normalised_to_rgb() -> None:
    grey = encode(Image.new("L", (30, 20), 200))
    out = run(grey)
    assert out.png is None and (out.width, out.height, out.original_format) == (30, 20, "PNG")
    rgba = encode(Image.new("RGBA", (30, 20), (10, 20, 30, 128)))
    out = run(rgba)
    decoded = Image.open(io.BytesIO(out.png))  # type: ignore[arg-type]
    assert decoded.mode == "RGB" and decoded.getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(fmt: str) -> None:
    image = Image.new("RGB", (40, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    out = run(encode(image, fmt, exif=exif))
    assert (out.width, out.height) == (10, 40) and out.png is not None


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped() -> None:
    ramp = (np.arange(256 * 64, dtype=np.uint32).reshape(64, 256) * 4).astype(np.uint16)  # 0 .. 65532
    out = run(encode(Image.fromarray(ramp)))
    got = pixels(out, b"")[..., 0]
    assert got.min() == 0 and got.max() == 255
    assert (got == 255).mean() < 0.01  # clipping made 99.8 % of such pixels 255
    assert abs(int(got[32, 128]) - round(int(ramp[32, 128]) / 257)) <= 1


def test_a_gif_is_read_from_its_first_frame() -> None:
    frames = [Image.new("P", (16, 8), i) for i in (3, 9)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = run(buf.getvalue())
    assert out.original_format == "GIF" and (out.width, out.height) == (16, 8) and out.png is not None


def bad_crc_png() -> bytes:
    good = encode(Image.new("RGB", (8, 8), (1, 2, 3)))
    header_crc = 8 + 4 + 4 + 13  # signature, IHDR length, type and data: the CRC follows
    return good[:header_crc] + struct.pack(">I", zlib.crc32(b"wrong")) + good[header_crc + 4 :]


@pytest.mark.parametrize(
    ("data", "code", "says"),
    [
        (b"just some text, not an image", "unsupported_format", "not an image we recognise"),
        (b"", "unsupported_format", "accepted: BMP, GIF, JPEG, PNG, TIFF, WEBP"),
        (b"%PDF-1.7\n...", "unsupported_format", "a PDF file"),
        (bad_crc_png(), "corrupt_image", "corrupt PNG"),
        (encode(Image.fromarray(NOISE))[:300], "corrupt_image", "corrupt PNG"),
        (pixel_bomb_png(), "image_too_large", "the limit is 10000000 pixels"),
    ],
    ids=["text", "empty", "pdf", "bad-crc", "truncated", "pixel-bomb"],
)
def test_bad_input_is_refused_naming_the_real_cause(data: bytes, code: str, says: str) -> None:
    with pytest.raises(InvalidImage) as err:
        run(data)
    assert err.value.code == code
    assert says in err.value.reason


def test_a_format_left_out_of_the_configuration_is_refused() -> None:
    with pytest.raises(InvalidImage) as err:
        run(encode(Image.new("RGB", (8, 8)), "GIF"), allowed=("PNG", "JPEG"))
    assert err.value.code == "unsupported_format" and "a GIF file; accepted: JPEG, PNG" in err.value.reason


def test_pixel_limit_is_checked_from_the_header_and_quotes_the_configured_limit() -> None:
    with pytest.raises(InvalidImage, match="100x100 = 10000 pixels; the limit is 5000 pixels"):
        run(encode(Image.new("RGB", (100, 100))), max_pixels=5000)


def test_an_upright_rgb_png_is_kept_as_uploaded_and_its_pixels_handed_on_undecoded() -> None:
    out = run(encode(Image.new("RGB", (12, 7), (1, 2, 3))))
    assert out.png is None and (out.width, out.height) == (12, 7)
    pixels = load_bgr(out.working, PIXELS)  # what infer, augment and merge read instead of the PNG
    assert (out.working_width, out.working_height) == (12, 7) and pixels.shape == (7, 12, 3) and (pixels == (3, 2, 1)).all()


def test_a_large_image_gets_a_bounded_working_copy_with_its_aspect() -> None:
    image = Image.new("RGB", (3000, 1000), (200, 10, 10))
    out = run(encode(image), working=512)
    assert (out.working_width, out.working_height) == (512, 171)
    working = load_bgr(out.working, PIXELS)
    assert working.shape == (171, 512, 3) and tuple(working[10, 10]) == (10, 10, 200)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("how", [Preprocessing(), Preprocessing(resize="letterbox", pad=7), Preprocessing(resize="tile")])
def test_the_working_copy_ingest_writes_gives_the_model_exactly_what_the_upload_would(fmt: str, how: Preprocessing) -> None:
    """Infer reads ingest's pixels instead of decoding the upload: the model's input is bit-identical."""
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (70, 110, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format=fmt)
    upload = buffer.getvalue()
    ingested = decode(upload, limits=Limits(allowed=frozenset({"PNG", "JPEG"}), max_pixels=10**6), working_max_side=1024)
    from_upload = prepare(upload, (48, 48), how)
    from_pixels = prepare_pixels(ingested.working, PIXELS, (48, 48), how)
    assert np.array_equal(from_upload.batch, from_pixels.batch) and from_upload.content == from_pixels.content
