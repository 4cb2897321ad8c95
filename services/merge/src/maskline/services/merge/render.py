"""Probabilities → hard mask, blended overlay (PNG bytes)."""

from __future__ import annotations

from typing import Any

import cv2
import fpng
import numpy as np
from numpy.typing import NDArray

from maskline.shared.images.codec import encode_png

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


#: Rows blended at a time (bounded temporaries whatever the image size).
BAND_ROWS = 512


def _source_cells(size: int, source: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """For each output pixel along one axis: the source cell (left/top neighbour) and the weight of
    the next one, with the pixel-centre mapping and edge clamping of `cv2.resize` (bilinear)."""
    position = (np.arange(size, dtype=np.float64) + 0.5) * (source / size) - 0.5
    cell = np.floor(position).astype(np.intp)
    weight = position - cell
    clamped = (cell < 0) | (cell >= source - 1)
    cell = np.clip(cell, 0, source - 1)
    weight[clamped] = 0.0
    return cell, weight.astype(np.float32)


def mask_at(probs_hwc: NDArray[np.float32], width: int, height: int) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """Hard mask and winning probability at (height, width) from class probabilities at the model's
    (smaller) size, as if the probabilities were upsampled bilinearly and arg-maxed per pixel.

    Without upsampling them: an output pixel interpolates four source pixels; when all four have
    the same arg-max class k, k wins the interpolation too (a convex combination keeps p_k >= p_j),
    and the winning probability is the interpolated maximum. Only pixels in cells whose corners
    disagree — the class boundaries — are interpolated in full. Memory: the mask and the score
    (float32: numpy's float16 conversion alone took longer than all the rest on 36 megapixels).
    """
    h, w, _ = probs_hwc.shape
    if (h, w) == (height, width):
        return hard_mask(probs_hwc)
    low = probs_hwc.argmax(axis=2).astype(np.uint8)
    down, right = np.minimum(np.arange(h) + 1, h - 1), np.minimum(np.arange(w) + 1, w - 1)
    uniform = (low == low[:, right]) & (low == low[down, :]) & (low == low[down][:, right])
    rows, fy = _source_cells(height, h)
    cols, fx = _source_cells(width, w)
    mask = np.take(np.take(low, rows, axis=0), cols, axis=1)
    best = np.ascontiguousarray(probs_hwc.max(axis=2))
    score = np.asarray(cv2.resize(best, (width, height), interpolation=cv2.INTER_LINEAR), dtype=np.float32)
    mixed = ~uniform
    # The output pixels of the cells whose corners disagree, a band of output rows at a time (all of
    # a band's pixels in one vectorised step; memory bounded whatever the image).
    for start in range(0, height, BAND_ROWS):
        band_rows = rows[start : start + BAND_ROWS]
        ys, xs = np.nonzero(mixed[band_rows][:, cols])
        if not len(ys):
            continue
        r, q = band_rows[ys], cols[xs]
        wx, wy = fx[xs][:, None], fy[start + ys][:, None]
        top = probs_hwc[r, q] + (probs_hwc[r, right[q]] - probs_hwc[r, q]) * wx
        bottom = probs_hwc[down[r], q] + (probs_hwc[down[r], right[q]] - probs_hwc[down[r], q]) * wx
        values = top + (bottom - top) * wy  # pixels x classes
        mask[start + ys, xs] = values.argmax(axis=1)
        score[start + ys, xs] = values.max(axis=1)
    return mask, score


def colours(classes: int) -> NDArray[np.float32]:
    return np.asarray(PALETTE[np.arange(classes) % len(PALETTE)], dtype=np.float32)


def overlay_bgr(image: NDArray[np.uint8], mask: NDArray[np.uint8], classes: int, alpha: float) -> NDArray[np.uint8]:
    """Blend class colours into the object pixels of a BGR image, in place, a band of rows at a time
    (OpenCV's look-up, blend and masked copy: 5x faster than numpy's boolean indexing on 36 MP);
    background pixels stay byte-identical."""
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[:classes, 0] = np.clip(colours(classes)[:, ::-1], 0, 255).astype(np.uint8)
    for top in range(0, image.shape[0], BAND_ROWS):
        band, labels = image[top : top + BAND_ROWS], mask[top : top + BAND_ROWS]
        colour = cv2.LUT(cv2.merge([labels, labels, labels]), lut)
        tinted = cv2.addWeighted(band, 1.0 - alpha, colour, alpha, 0.0)
        cv2.copyTo(tinted, labels, band)  # only where the label is not background
    return image


def overlay(image: NDArray[np.uint8], mask: NDArray[np.uint8], classes: int, alpha: float) -> NDArray[np.uint8]:
    """The same blend on an RGB image (a copy)."""
    bgr = np.ascontiguousarray(image[..., ::-1])
    return np.ascontiguousarray(overlay_bgr(bgr, mask, classes, alpha)[..., ::-1])


def png(array: NDArray[np.uint8], *, bgr: bool = False) -> bytes:
    return encode_png(array, bgr=bgr)


#: fpng writes a side as 16 bits: a longer one comes out as a broken PNG (checked: 65,536 rows fail).
FPNG_MAX_SIDE = 65_535


def overlay_png(bgr: NDArray[np.uint8]) -> bytes:
    """The overlay (an RGB photo, the largest output) as PNG with fpng: 10-20x faster to encode than
    zlib's fastest level (1.1 vs 11.4 ms at 512 x 512, 0.14 vs 2.7 ms at 256 x 256), files about 11%
    larger. Any PNG reader decodes it to the same pixels. Sides past fpng's limit go through OpenCV."""
    if max(bgr.shape[:2]) > FPNG_MAX_SIDE:
        return encode_png(bgr, bgr=True)
    return bytes(fpng.from_ndarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
