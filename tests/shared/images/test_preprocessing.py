"""The platform's one preprocessing: stretch, letterbox and tiles, and the way back to the image's geometry."""

from __future__ import annotations

import numpy as np
import pytest

from maskline.contracts.model_v1 import Preprocessing
from maskline.shared.images.codec import encode_png, prepare, stitch

pytestmark = pytest.mark.unit


def wide_image() -> np.ndarray:
    image = np.zeros((60, 180, 3), np.uint8)
    image[15:45, 100:130] = 255
    return image


def test_stretch_fills_the_input_and_keeps_nothing_else() -> None:
    prepared = prepare(encode_png(wide_image()), (32, 32))
    assert prepared.batch.shape == (1, 3, 32, 32) and prepared.content == (0, 0, 32, 32)
    assert prepared.batch.max() == pytest.approx(1.0)


def test_letterbox_keeps_the_aspect_and_says_where_the_image_is() -> None:
    prepared = prepare(encode_png(wide_image()), (90, 90), Preprocessing(resize="letterbox", pad=255))
    assert prepared.content == (30, 0, 30, 90)  # 180x60 scaled by 0.5, centred vertically
    batch = prepared.batch[0]
    assert np.allclose(batch[:, :30], 1.0) and np.allclose(batch[:, 60:], 1.0)  # the padding
    assert np.allclose(batch[:, 30:60, :40], 0.0)  # the dark left of the image
    scores = np.repeat(prepared.batch[:, :1], 2, axis=1)
    assert stitch(prepared, scores).shape == (2, 30, 90)


def test_normalisation_and_channel_order_follow_the_declaration() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 255  # red
    how = Preprocessing(scale=1.0, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0), channels="bgr")
    batch = prepare(encode_png(image), (8, 8), how).batch[0]
    assert np.allclose(batch[0], -5.0) and np.allclose(batch[1], -5.0) and np.allclose(batch[2], (255 - 30) / 5)


def test_tiles_cover_the_image_at_native_resolution_and_stitch_back_exactly() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    prepared = prepare(encode_png(image), (64, 64), Preprocessing(resize="tile", overlap=0.25))
    assert prepared.content == (0, 0, 100, 150)
    assert prepared.tiles == tuple((t, left) for t in (0, 36) for left in (0, 48, 86))
    # a per-pixel "model": its stitched output is the image itself, overlaps averaged to the same value
    stitched = stitch(prepared, prepared.batch[:, :2])
    assert stitched.shape == (2, 100, 150)
    assert np.allclose(stitched[0], image[..., 0] / 255.0, atol=1e-6)


def test_an_image_smaller_than_a_tile_is_padded_then_cropped_back() -> None:
    image = np.full((20, 30, 3), 200, np.uint8)
    prepared = prepare(encode_png(image), (64, 64), Preprocessing(resize="tile"))
    assert prepared.batch.shape == (1, 3, 64, 64) and prepared.tiles == ((0, 0),)
    assert stitch(prepared, prepared.batch[:, :1]).shape == (1, 20, 30)
