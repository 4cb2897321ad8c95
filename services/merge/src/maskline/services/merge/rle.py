"""COCO RLE of one region from its bounding-box crop, without a full-image mask per region.

COCO run-length encoding walks the whole H x W image column by column. Outside the region's
bounding box every pixel is 0, so the runs can be computed from the crop alone: the rows above
and below the crop in each column, and the columns left and right of it, are zero runs whose
lengths are known. Cost: the crop's area, not the image's — on a 36-megapixel image that is the
difference between milliseconds and a 36 MB array per region. `pycocotools` compresses the counts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pycocotools import mask as coco_mask


def counts_from_crop(crop: NDArray[np.bool_], x: int, y: int, width: int, height: int) -> list[int]:
    """Uncompressed COCO counts (zeros first) of an image that is 0 outside `crop` at (x, y)."""
    h, w = crop.shape
    # Column-major walk: each crop column, then the gap to the next column's crop rows (H - h zeros).
    values = np.zeros((w, h + 1), dtype=np.uint8)
    values[:, :h] = crop.T
    weights = np.ones((w, h + 1), dtype=np.int64)
    weights[:, h] = height - h
    weights[-1, h] = (height - y - h) + (width - x - w) * height  # below the last column, and the columns after
    flat_values = np.concatenate(([0], values.ravel()))
    flat_weights = np.concatenate(([x * height + y], weights.ravel()))  # columns before, rows above
    keep = flat_weights > 0
    flat_values, flat_weights = flat_values[keep], flat_weights[keep]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(flat_values)) + 1))
    counts = np.add.reduceat(flat_weights, starts).tolist()
    return [0, *counts] if flat_values[0] == 1 else counts


def encode_crop(crop: NDArray[np.bool_], x: int, y: int, width: int, height: int) -> dict[str, Any]:
    """Compressed COCO RLE (`size` [height, width], `counts` bytes) of the region."""
    rle: dict[str, Any] = coco_mask.frPyObjects(
        {"counts": counts_from_crop(crop, x, y, width, height), "size": [height, width]}, height, width
    )
    return rle
