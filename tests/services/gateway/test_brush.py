"""Label Studio brush masks from COCO RLE, checked against pycocotools and Label Studio's own SDK."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle, mask2rle
from pycocotools import mask as coco_mask

from maskline.contracts.http_v1 import Rle
from maskline.services.gateway.segmentations.brush import label_studio_rle, mask_of

pytestmark = pytest.mark.unit


def a_mask(height: int, width: int, seed: int) -> np.ndarray:
    """A block with a hole and scattered specks: runs of every length class."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), bool)
    mask[height // 4 : height // 2 + 1, width // 3 : width // 2 + 1] = True
    mask[height // 3 : height // 3 + 2, width // 3 + 1 : width // 3 + 3] = False
    return mask ^ (rng.random((height, width)) < 0.01)


def coco(mask: np.ndarray) -> Rle:
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return Rle(size=list(encoded["size"]), counts=encoded["counts"].decode())


@pytest.mark.parametrize(("height", "width"), [(3, 4), (128, 128), (301, 517), (1, 70_000)])
def test_a_coco_rle_reads_back_as_the_mask_pycocotools_encoded(height: int, width: int) -> None:
    mask = a_mask(height, width, seed=height)
    assert (mask_of(coco(mask)) == mask).all()


@pytest.mark.parametrize(("height", "width"), [(3, 4), (128, 128), (301, 517), (1, 70_000), (400, 400)])
def test_the_brush_rle_is_label_studios_own_byte_for_byte(height: int, width: int) -> None:
    mask = a_mask(height, width, seed=width) if height != 400 else np.zeros((height, width), bool)  # one run of 640,000
    packed = label_studio_rle(mask)
    theirs = mask2rle((mask * 255).astype(np.uint8))
    # The SDK's encoder gives the same bytes, and a zero byte more when the bits end on a byte boundary.
    assert packed == theirs[: len(packed)] and theirs[len(packed) :] in ([], [0])
    rgba = decode_rle(bytes(packed)).reshape(height, width, 4)  # and its decoder the same pixels
    assert (rgba == (mask * 255)[..., None]).all()


def test_counts_that_do_not_cover_the_image_are_refused() -> None:
    rle = coco(np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="cover 16 pixels, not 4 x 5"):
        mask_of(Rle(size=[4, 5], counts=rle.counts))
