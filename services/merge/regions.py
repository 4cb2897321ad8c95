"""Hard mask → regions: connected components with label, score, area, bbox, COCO RLE and polygon."""

from __future__ import annotations

from typing import Any

import cv2
import msgspec
import numpy as np
from numpy.typing import NDArray
from pycocotools import mask as coco_mask


class Rle(msgspec.Struct, frozen=True):
    size: list[int]
    """[height, width], as COCO writes it."""
    counts: str


class Region(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    label: str
    class_id: int
    score: float
    """Mean probability of the region's class over its pixels."""
    area: int
    bbox: list[int]
    """[x, y, width, height] in pixels (COCO order)."""
    rle: Rle
    polygon: list[list[float]]
    """Outer contours as flat [x1, y1, x2, y2, ...] lists (COCO polygon format)."""


def _polygons(component: NDArray[np.uint8]) -> list[list[float]]:
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def find_regions(mask: NDArray[np.uint8], score: NDArray[np.float32], labels: tuple[str, ...], min_area: int = 0) -> list[Region]:
    regions: list[Region] = []
    for class_id in range(1, len(labels)):
        binary = (mask == class_id).astype(np.uint8)
        if not binary.any():
            continue
        count, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            if area < max(min_area, 1):
                continue
            component = (components == index).astype(np.uint8)
            rle: dict[str, Any] = coco_mask.encode(np.asfortranarray(component))
            regions.append(
                Region(
                    id=0,
                    label=labels[class_id],
                    class_id=class_id,
                    score=round(float(score[component.astype(bool)].mean()), 4),
                    area=area,
                    bbox=[x, y, w, h],
                    rle=Rle(size=[int(v) for v in rle["size"]], counts=rle["counts"].decode("ascii")),
                    polygon=_polygons(component),
                )
            )
    regions.sort(key=lambda r: -r.area)
    return [msgspec.structs.replace(r, id=i + 1) for i, r in enumerate(regions)]
