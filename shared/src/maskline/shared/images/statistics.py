"""What the quality summaries watch of an image and of a model's answer to it
(`shared.operations.quality`): its brightness, and how sure the model was over the whole image."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from maskline.contracts import seg_v1


def brightness(bgr: NDArray[np.uint8]) -> float:
    """Mean brightness 0-1 (Rec. 601 luma) of an H x W x 3 BGR image, from every 4th pixel each way."""
    sample = bgr[::4, ::4].astype(np.float32)
    luma = sample[..., 0] * 0.114 + sample[..., 1] * 0.587 + sample[..., 2] * 0.299
    return round(float(luma.mean()) / 255.0, 4)


def confidence(score: NDArray[np.float32]) -> seg_v1.Confidence:
    """Whole-image certainty from the winning probability per pixel (what merge reports for a job)."""
    return seg_v1.Confidence(
        mean_probability=round(float(score.mean(dtype=np.float64)), 4),
        uncertain_fraction=round(float(np.count_nonzero(score < seg_v1.UNCERTAIN_BELOW)) / max(score.size, 1), 4),
    )


def confidence_of(scores: NDArray[Any]) -> seg_v1.Confidence:
    """`confidence` of C x H x W class probabilities (an evaluation's, at the model's output size)."""
    return confidence(np.asarray(scores, dtype=np.float32).max(axis=0))
