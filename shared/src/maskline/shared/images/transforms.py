"""The five-way augmentation (original, rotate, blur, flip, flop) and the inverse geometry.

Used forward by augment (images, and masks with nearest-neighbour) and backward by merge (each
variant's class probabilities are mapped back onto the original image before fusion). Flips and
multiples of 90 degrees are exact permutations of pixels; other angles rotate about the centre on
the same canvas, and `valid` marks the original pixels a variant actually saw.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from maskline.contracts.common_v1 import ALL_VARIANTS, Fusion, Variant, VariantName

Array = NDArray[Any]

__all__ = [
    "ALL_VARIANTS",
    "Fusion",
    "Variant",
    "VariantName",
    "apply",
    "fuse",
    "invert",
    "valid_region",
    "variant_shape",
    "variants",
]


def variants(names: tuple[VariantName, ...], *, angle: float, sigma: float) -> list[Variant]:
    return [Variant(name=n, angle=angle if n == "rotate" else 0.0, sigma=sigma if n == "blur" else 0.0) for n in names]


def _quarter_turns(angle: float) -> int | None:
    turns = angle / 90.0
    return round(turns) % 4 if abs(turns - round(turns)) < 1e-9 else None


def _rotation(shape: tuple[int, int], angle: float) -> Array:
    height, width = shape
    return np.asarray(cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, 1.0))


def _warp(array: Array, matrix: Array, nearest: bool) -> Array:
    height, width = array.shape[:2]
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    warp: Any = cv2.warpAffine
    out = np.asarray(warp(array, matrix, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0))
    return out.reshape(array.shape) if out.ndim < array.ndim else out  # cv2 drops a trailing axis of 1


def apply(variant: Variant, image: Array, *, nearest: bool = False) -> Array:
    """Forward transform of an H x W (x C) array. `nearest` for label masks (no new values)."""
    if variant.name == "flip":
        return np.ascontiguousarray(image[::-1])
    if variant.name == "flop":
        return np.ascontiguousarray(image[:, ::-1])
    if variant.name == "blur":
        return image if nearest or variant.sigma <= 0 else cv2.GaussianBlur(image, (0, 0), variant.sigma)
    if variant.name == "rotate":
        turns = _quarter_turns(variant.angle)
        if turns is not None:
            return np.ascontiguousarray(np.rot90(image, turns))
        return _warp(image, _rotation((image.shape[0], image.shape[1]), variant.angle), nearest)
    return image


def invert(variant: Variant, array: Array, shape: tuple[int, int], *, nearest: bool = False) -> Array:
    """Map an array computed on the variant back onto the original H x W = `shape`."""
    if variant.name in ("flip", "flop"):
        return apply(variant, array)
    if variant.name == "rotate":
        turns = _quarter_turns(variant.angle)
        if turns is not None:
            return np.ascontiguousarray(np.rot90(array, -turns))
        return _warp(array, _rotation(shape, -variant.angle), nearest)
    return array


def variant_shape(variant: Variant, shape: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the variant of an image of `shape`: odd quarter turns swap the sides."""
    turns = _quarter_turns(variant.angle) if variant.name == "rotate" else 0
    return (shape[1], shape[0]) if turns in (1, 3) else shape


def valid_region(variant: Variant, shape: tuple[int, int]) -> Array:
    """Pixels of the original that the variant kept (False where a rotation pushed them off the canvas)."""
    if variant.name != "rotate" or _quarter_turns(variant.angle) is not None:
        return np.ones(shape, dtype=bool)
    ones = np.ones(shape, dtype=np.uint8)
    back = invert(variant, apply(variant, ones, nearest=True), shape, nearest=True)
    return np.asarray(back, dtype=bool)


def fuse(probs: list[Array], valid: list[Array], method: Fusion = "mean") -> Array:
    """Fuse per-variant H x W x C probabilities (already in original geometry) into one H x W x C.

    Pixels a variant did not see carry no weight for it (they are not counted as background).
    """
    stack = np.stack(probs)  # V x H x W x C
    weights = np.stack(valid).astype(np.float32)[..., None]  # V x H x W x 1
    seen = np.maximum(weights.sum(axis=0), 1e-6)
    mean = (stack * weights).sum(axis=0) / seen
    if method == "mean":
        return np.asarray(mean, dtype=np.float32)
    if method == "max":
        peak = np.where(weights > 0, stack, 0.0).max(axis=0)
        return np.asarray(peak / np.maximum(peak.sum(axis=-1, keepdims=True), 1e-6), dtype=np.float32)
    classes = stack.shape[-1]
    votes = (np.eye(classes, dtype=np.float32)[stack.argmax(axis=-1)] * weights).sum(axis=0)
    # Ties between votes are broken by the mean probability (a small fraction of a vote).
    return np.asarray((votes + mean * 0.5) / (seen + 0.5), dtype=np.float32)
