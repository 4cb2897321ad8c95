"""The overlay's fast PNG encoder: what any PNG reader decodes is the blended image, at every size."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from maskline.services.merge import render

pytestmark = pytest.mark.unit


def decoded(png: bytes) -> np.ndarray:  # type: ignore[type-arg]
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.mark.parametrize("shape", [(1, 1), (256, 256), (512, 384), (3, 65_535), (65_535, 2)])
def test_the_overlay_png_holds_the_blended_pixels(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    bgr = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = (rng.random(shape) > 0.5).astype(np.uint8)
    tinted = render.overlay_bgr(bgr.copy(), mask, 2, 0.5)
    png = render.overlay_png(tinted)
    assert (decoded(png) == tinted[..., ::-1]).all()
    assert (cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) == tinted).all()


def test_a_side_past_fpngs_limit_goes_through_opencv() -> None:
    bgr = np.random.default_rng(1).integers(0, 256, (render.FPNG_MAX_SIDE + 1, 3, 3), dtype=np.uint8)
    assert (decoded(render.overlay_png(bgr)) == bgr[..., ::-1]).all()
