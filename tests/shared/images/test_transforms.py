"""Every geometric transform's inverse restores masks: exactly for flips and quarter turns, within
a stated tolerance for other angles (inside the region the rotation kept)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from maskline.shared.images import transforms as tf

pytestmark = pytest.mark.unit

masks = st.tuples(st.integers(1, 48), st.integers(1, 48)).flatmap(
    lambda shape: arrays(np.uint8, shape, elements=st.integers(0, 4))
)


@settings(max_examples=60, deadline=None)
@given(masks, st.sampled_from(["flip", "flop"]))
def test_flips_invert_exactly(mask: np.ndarray, name: str) -> None:
    variant = tf.Variant(name=name)  # type: ignore[arg-type]
    assert (tf.invert(variant, tf.apply(variant, mask, nearest=True), mask.shape) == mask).all()
    assert tf.valid_region(variant, mask.shape).all()


@settings(max_examples=60, deadline=None)
@given(masks, st.sampled_from([-270.0, -180.0, -90.0, 0.0, 90.0, 180.0, 270.0, 360.0]))
def test_quarter_turns_invert_exactly_on_any_shape(mask: np.ndarray, angle: float) -> None:
    variant = tf.Variant(name="rotate", angle=angle)
    rotated = tf.apply(variant, mask, nearest=True)
    assert sorted(rotated.shape) == sorted(mask.shape)
    assert (tf.invert(variant, rotated, mask.shape, nearest=True) == mask).all()


def blocky_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for _ in range(4):
        x, y = rng.integers(0, size - 12, 2)
        mask[y : y + int(rng.integers(8, 24)), x : x + int(rng.integers(8, 24))] = rng.integers(1, 4)
    return mask


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.floats(5, 60), st.sampled_from([-1, 1]))
def test_other_angles_invert_within_tolerance_inside_the_kept_region(seed: int, magnitude: float, sign: int) -> None:
    angle = sign * magnitude
    # Tolerance: at most 3% of the kept pixels change label (nearest-neighbour resampling twice
    # moves object edges by up to one pixel).
    mask = blocky_mask(np.random.default_rng(seed), 64)
    variant = tf.Variant(name="rotate", angle=angle)
    back = tf.invert(variant, tf.apply(variant, mask, nearest=True), mask.shape, nearest=True)
    valid = tf.valid_region(variant, mask.shape)
    assert valid.mean() > 0.4 and not valid.all()
    assert (back[valid] != mask[valid]).mean() <= 0.03


def test_blur_changes_pixels_not_geometry() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    image[5:15, 5:15] = 200
    variant = tf.Variant(name="blur", sigma=2.0)
    assert tf.apply(variant, image).shape == image.shape
    assert (tf.apply(variant, image) != image).any()
    mask = (image[..., 0] > 0).astype(np.uint8)
    assert (tf.apply(variant, mask, nearest=True) == mask).all()  # labels are never blurred


def one_hot(mask: np.ndarray, classes: int = 3) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[mask]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["mean", "max", "vote"]))
def test_tta_of_an_equivariant_model_equals_the_single_prediction(seed: int, method: str) -> None:
    # A pixel-wise "model" commutes with every geometric transform, so fusing its predictions on
    # all variants (mapped back) must reproduce its prediction on the original exactly.
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 3, (24, 32)).astype(np.uint8)

    def model(x: np.ndarray) -> np.ndarray:
        return one_hot(x) * 0.8 + 0.2 / 3

    single = model(image)
    chosen = [tf.Variant(name=n, angle=90.0) for n in ("original", "flip", "flop", "rotate")]
    probs = [tf.invert(v, model(tf.apply(v, image, nearest=True)), image.shape) for v in chosen]
    fused = tf.fuse(probs, [tf.valid_region(v, image.shape) for v in chosen], method)  # type: ignore[arg-type]
    assert (fused.argmax(-1) == single.argmax(-1)).all()
    if method == "mean":
        assert np.allclose(fused, single)


def test_pixels_a_rotation_cut_off_are_not_counted_as_background() -> None:
    shape = (40, 40)
    variant = tf.Variant(name="rotate", angle=30.0)
    valid = tf.valid_region(variant, shape)
    original = np.zeros((*shape, 2), np.float32)
    original[..., 1] = 1.0  # everything is class 1
    rotated_view = original.copy()
    rotated_view[~valid] = [1.0, 0.0]  # off-canvas pixels look like background to the model
    fused = tf.fuse([original, rotated_view], [np.ones(shape, bool), valid], "mean")
    assert (fused.argmax(-1) == 1).all()
    assert np.allclose(fused[~valid], [0.0, 1.0])
