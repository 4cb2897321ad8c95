"""Hard mask → regions: connected components with label, score, area, bbox, COCO RLE and polygon."""

from __future__ import annotations

from typing import Any

import cv2
import msgspec
import numpy as np
from numpy.typing import NDArray

from maskline.contracts.http_v1 import Region, Rle
from maskline.services.merge.rle import encode_crop


def _polygons(crop: NDArray[np.uint8], x: int, y: int) -> list[list[float]]:
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _extent(binary: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    """(x, y, width, height) of the True pixels: components are searched only there."""
    rows, cols = np.flatnonzero(binary.any(axis=1)), np.flatnonzero(binary.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def find_regions(
    mask: NDArray[np.uint8], score: NDArray[np.floating[Any]], labels: tuple[str, ...], min_area: int = 0
) -> list[Region]:
    """Connected regions per class. Work per region is its bounding box, not the image: a crop, its
    contours, its score, and its COCO RLE computed from the crop (`rle.py`)."""
    height, width = mask.shape
    regions: list[Region] = []
    for class_id in range(1, len(labels)):
        present = mask == class_id
        if not present.any():
            continue
        ex, ey, ew, eh = _extent(present)
        binary = present[ey : ey + eh, ex : ex + ew].astype(np.uint8)
        del present
        count, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            if area < max(min_area, 1):
                continue
            crop = components[y : y + h, x : x + w] == index
            x, y = x + ex, y + ey
            rle = encode_crop(crop, x, y, width, height)
            regions.append(
                Region(
                    id=0,
                    label=labels[class_id],
                    class_id=class_id,
                    score=round(float(score[y : y + h, x : x + w][crop].astype(np.float64).mean()), 4),
                    area=area,
                    bbox=[x, y, w, h],
                    rle=Rle(size=[int(v) for v in rle["size"]], counts=rle["counts"].decode("ascii")),
                    polygon=_polygons(crop.astype(np.uint8), x, y),
                )
            )
    regions.sort(key=lambda r: -r.area)
    return [msgspec.structs.replace(r, id=i + 1) for i, r in enumerate(regions)]
