"""Segmentation scores over a dataset: per-class IoU, pixel accuracy and boundary F-score.

Counts are summed over every image before dividing (a dataset IoU, as Cityscapes and COCO-stuff
report it), so a large image weighs more than a small one. Mask values at or above the number of
classes (255 as "ignore", for instance) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def upsample(scores: NDArray[Any], size: tuple[int, int]) -> NDArray[np.intp]:
    """Class ids at (height, width) from C x h x w scores, resized bilinearly first (as merge renders)."""
    height, width = size
    if scores.shape[1:] == (height, width):
        ids: NDArray[np.intp] = np.asarray(scores).argmax(0)
        return ids
    planes = [
        np.asarray(Image.fromarray(np.asarray(c, np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR))
        for c in scores
    ]
    resized: NDArray[np.intp] = np.stack(planes).argmax(0)
    return resized


def _shifted_all(mask: NDArray[np.bool_], combine: Any) -> NDArray[np.bool_]:
    """3 x 3 erosion (`np.logical_and`) or dilation (`np.logical_or`), edges padded to keep the border."""
    padded = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    out = mask.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out = combine(out, padded[dy : dy + h, dx : dx + w])
    return out


def boundary(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    return mask & ~_shifted_all(mask, np.logical_and)


def dilate(mask: NDArray[np.bool_], pixels: int) -> NDArray[np.bool_]:
    for _ in range(pixels):
        mask = _shifted_all(mask, np.logical_or)
    return mask


@dataclass
class Scoreboard:
    """Running counts for one evaluation."""

    classes: int
    tolerance: int
    confusion: NDArray[np.int64] = field(init=False)
    boundary_counts: NDArray[np.int64] = field(init=False)
    """Per class: predicted boundary pixels near a true one, predicted boundary pixels, true
    boundary pixels near a predicted one, true boundary pixels."""

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.classes, self.classes), np.int64)
        self.boundary_counts = np.zeros((self.classes, 4), np.int64)

    def add(self, truth: NDArray[Any], predicted: NDArray[Any]) -> None:
        keep = truth < self.classes
        t, p = truth[keep].astype(np.int64), predicted[keep].astype(np.int64)
        self.confusion += np.bincount(t * self.classes + p, minlength=self.classes**2).reshape(self.classes, self.classes)
        for cls in range(self.classes):
            tb, pb = boundary((truth == cls) & keep), boundary((predicted == cls) & keep)
            if not tb.any() and not pb.any():
                continue
            near_true, near_pred = dilate(tb, self.tolerance), dilate(pb, self.tolerance)
            self.boundary_counts[cls] += ((pb & near_true).sum(), pb.sum(), (tb & near_pred).sum(), tb.sum())

    def ious(self) -> list[float | None]:
        inter = np.diag(self.confusion)
        union = self.confusion.sum(0) + self.confusion.sum(1) - inter
        return [float(i / u) if u else None for i, u in zip(inter, union, strict=True)]

    def boundary_f1s(self) -> list[float | None]:
        scores: list[float | None] = []
        for matched_pred, pred, matched_true, true in self.boundary_counts:
            if not pred and not true:
                scores.append(None)
                continue
            precision = matched_pred / pred if pred else 0.0
            recall = matched_true / true if true else 0.0
            scores.append(float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0)
        return scores

    def pixel_accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else 0.0

    def pixels(self) -> list[int]:
        return [int(n) for n in self.confusion.sum(1)]


def mean(values: list[float | None]) -> float:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else 0.0
