"""Probabilities → hard mask, blended overlay (PNG bytes)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from maskline.shared.images import encode_png

# Class colours (class 0, background, is left uncoloured); cycles for models with more classes.
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [145, 30, 180],
        [70, 240, 240],
        [245, 130, 48],
        [240, 50, 230],
        [210, 245, 60],
        [0, 128, 128],
        [170, 110, 40],
    ],
    dtype=np.float32,
)


def upsample(probs: NDArray[np.floating[Any]], width: int, height: int) -> NDArray[np.float32]:
    """(C, h, w) probabilities → (H, W, C) at the image's own size, bilinear."""
    hwc = np.ascontiguousarray(probs.astype(np.float32).transpose(1, 2, 0))
    if hwc.shape[:2] == (height, width):
        return hwc.astype(np.float32, copy=False)
    out = cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)
    result = out[..., None] if out.ndim == 2 else out
    return np.asarray(result, dtype=np.float32)


def hard_mask(probs_hwc: NDArray[np.float32]) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """Class id per pixel and the winning class's probability per pixel."""
    mask = probs_hwc.argmax(axis=2).astype(np.uint8)
    score = np.take_along_axis(probs_hwc, mask[..., None].astype(np.intp), axis=2)[..., 0]
    return mask, score


def colours(classes: int) -> NDArray[np.float32]:
    return np.asarray(PALETTE[np.arange(classes) % len(PALETTE)], dtype=np.float32)


def overlay(image: NDArray[np.uint8], mask: NDArray[np.uint8], classes: int, alpha: float) -> NDArray[np.uint8]:
    """Blend class colours into the object pixels only; background pixels stay byte-identical."""
    out = image.copy()
    objects = mask > 0
    blend = image[objects].astype(np.float32) * (1 - alpha) + colours(classes)[mask[objects]] * alpha
    out[objects] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    return out


def png(array: NDArray[np.uint8]) -> bytes:
    return encode_png(array)
