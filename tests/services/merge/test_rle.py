"""The crop-based COCO RLE is byte-identical to pycocotools encoding the full-image mask."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from maskline.services.merge.rle import encode_crop

pytestmark = pytest.mark.unit


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    solid=st.booleans(),
)
def test_crop_rle_equals_full_image_rle(height: int, width: int, seed: int, solid: bool) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), bool)
    x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
    x1, y1 = int(rng.integers(x0 + 1, width + 1)), int(rng.integers(y0 + 1, height + 1))
    mask[y0:y1, x0:x1] = True if solid else rng.random((y1 - y0, x1 - x0)) < 0.5
    if not mask.any():
        return
    ys, xs = np.nonzero(mask)
    x, y = int(xs.min()), int(ys.min())
    crop = mask[y : ys.max() + 1, x : xs.max() + 1]
    full = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    ours = encode_crop(crop, x, y, width, height)
    assert ours["counts"] == full["counts"] and list(ours["size"]) == [height, width]
