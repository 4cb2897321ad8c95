"""An earlier answer handed in as a prior mask: read as the object's pixels, and refused (with a
stable code, before any large decode) when it is not an 8-bit one-channel mask of sane size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from maskline.services.infer.prompted import prior_at
from maskline.shared.errors import PermanentError

pytestmark = pytest.mark.unit


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_prior_is_the_masks_value_or_any_nonzero_pixel_at_the_working_size() -> None:
    mask = np.zeros((20, 40), np.uint8)
    mask[:, :10], mask[:, 30:] = 1, 2
    data = png(Image.fromarray(mask))
    assert prior_at(data, 2, 10, 20)[:, 15:].all() and not prior_at(data, 2, 10, 20)[:, :15].any()
    assert prior_at(data, 0, 20, 40).sum() == 20 * 20


@pytest.mark.parametrize(
    "image",
    [
        Image.new("I;16", (8, 8), 300),  # 16 bits: value 256 would read as 0
        Image.new("RGB", (8, 8)),
    ],
)
def test_a_prior_that_is_not_one_8_bit_channel_is_refused(image: Image.Image) -> None:
    with pytest.raises(PermanentError) as refused:
        prior_at(png(image), 0, 8, 8)
    assert refused.value.code == "invalid_prompt_mask"


def test_a_huge_prior_is_refused_from_its_header() -> None:
    bomb = png(Image.new("1", (8_000, 8_000)))  # a few KB of PNG, 64 million pixels
    assert len(bomb) < 100_000
    with pytest.raises(PermanentError, match="over"):
        prior_at(bomb, 0, 8, 8)


@pytest.mark.parametrize("data", [b"not a png", png(Image.new("1", (20_000, 20_000)))])
def test_bytes_that_are_no_mask_are_refused(data: bytes) -> None:
    with pytest.raises(PermanentError) as refused:  # the second: over twice Pillow's own bomb limit
        prior_at(data, 0, 8, 8)
    assert refused.value.code == "invalid_prompt_mask"
