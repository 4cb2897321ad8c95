from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from maskline.services.merge import render
from maskline.services.merge.regions import find_regions

pytestmark = pytest.mark.unit
LABELS = ("background", "a", "b")


def test_regions_are_connected_components_with_exact_rle_bbox_and_area() -> None:
    mask = np.zeros((40, 50), dtype=np.uint8)
    mask[5:15, 10:30] = 1  # 200 px
    mask[20:25, 2:6] = 1  # 20 px, separate component of the same class
    mask[30:38, 40:48] = 2  # 64 px
    score = np.full(mask.shape, 0.8, dtype=np.float32)
    regions = find_regions(mask, score, LABELS)
    assert [(r.label, r.area, r.bbox) for r in regions] == [
        ("a", 200, [10, 5, 20, 10]),
        ("b", 64, [40, 30, 8, 8]),
        ("a", 20, [2, 20, 4, 5]),
    ]
    assert [r.id for r in regions] == [1, 2, 3]
    for r in regions:
        decoded = coco_mask.decode({"size": r.rle.size, "counts": r.rle.counts.encode()})
        assert decoded.sum() == r.area
        assert r.score == pytest.approx(0.8)
        xs, ys = r.polygon[0][0::2], r.polygon[0][1::2]
        assert (min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1) == tuple(r.bbox)


def test_min_area_drops_small_regions() -> None:
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[0:2, 0:2] = 1
    mask[5:10, 5:10] = 2
    assert [r.label for r in find_regions(mask, np.ones((10, 10), np.float32), LABELS, min_area=5)] == ["b"]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.randoms(use_true_random=False))
def test_rle_of_every_region_decodes_back_to_the_mask(h: int, w: int, rnd) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(rnd.randint(0, 2**31))
    mask = rng.integers(0, 3, (h, w)).astype(np.uint8)
    regions = find_regions(mask, np.ones((h, w), np.float32), LABELS)
    rebuilt = np.zeros_like(mask)
    for r in regions:
        decoded = coco_mask.decode({"size": r.rle.size, "counts": r.rle.counts.encode()}).astype(bool)
        assert not rebuilt[decoded].any()  # regions do not overlap
        rebuilt[decoded] = r.class_id
    assert (rebuilt == mask).all()


def test_upsample_and_hard_mask_follow_the_probabilities() -> None:
    probs = np.zeros((3, 4, 4), dtype=np.float16)
    probs[0] = 1.0
    probs[:, :, 2:] = 0
    probs[2, :, 2:] = 1.0
    hwc = render.upsample(probs, 8, 8)
    mask, score = render.hard_mask(hwc)
    assert hwc.shape == (8, 8, 3)
    assert (mask[:, :3] == 0).all() and (mask[:, 5:] == 2).all()
    assert score.max() <= 1.0


def test_overlay_tints_objects_and_leaves_background() -> None:
    image = np.full((4, 4, 3), 100, dtype=np.uint8)
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[0, 0] = 1
    out = render.overlay(image, mask, 3, alpha=0.5)
    assert (out[1:, :] == 100).all()
    assert tuple(out[0, 0]) == tuple(np.rint(np.array([100, 100, 100]) * 0.5 + render.PALETTE[1] * 0.5).astype(np.uint8))
