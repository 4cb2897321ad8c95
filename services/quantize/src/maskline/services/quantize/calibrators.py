"""Calibrators: from what a tensor looked like on calibration data to the range int8 must cover.

Pure NumPy, one small function per method, so each has known-answer tests of its own:

- `minmax`: the observed minimum and maximum;
- `percentile`: clip both tails at the p-th percentile (e.g. 99.99);
- `entropy`: TensorRT's KL-divergence calibration on a 2048-bin histogram of |x|;
- `log2`: the min/max range with its scale rounded up to a power of two (shift-only rescaling).

`qparams` turns a range into an affine (scale, zero point) for a given integer grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Method = Literal["minmax", "entropy", "log2", "percentile"]
METHODS: tuple[Method, ...] = ("minmax", "entropy", "log2", "percentile")
HISTOGRAM_BINS = 2048
QUANTIZED_LEVELS = 128
START_BIN = 128
#: Entropy calibration clips outliers; a threshold above more than this share of values is refused.
MAX_CLIPPED = 0.05


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float


@dataclass(frozen=True)
class Observed:
    """What an observer saw: the exact extremes and a sample of the values."""

    lo: float
    hi: float
    samples: NDArray[np.float32]


def minmax(seen: Observed) -> Range:
    return Range(seen.lo, seen.hi)


def percentile(seen: Observed, p: float = 99.99) -> Range:
    if not 50.0 < p <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {p}")
    if seen.samples.size == 0:
        return minmax(seen)
    lo, hi = np.percentile(seen.samples.astype(np.float64), [100.0 - p, p])
    # A tail that never went below (above) zero stays exactly at the observed extreme.
    return Range(float(lo) if seen.lo < 0 else seen.lo, float(hi) if seen.hi > 0 else seen.hi)


def _kl(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    mask = p > 0
    if np.any(q[mask] == 0):
        return math.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def entropy_threshold(
    hist: NDArray[np.int64] | NDArray[np.float64], levels: int = QUANTIZED_LEVELS, start: int = START_BIN
) -> int:
    """TensorRT's entropy calibration: the bin index i (threshold = edges[i]) of least KL divergence.

    For each candidate i from `start` to the number of bins: P is the first i bins with every count
    above them folded into bin i-1; Q is those i bins squeezed into `levels` levels and expanded back,
    each level's count spread evenly over its non-empty bins. Ties keep the smallest threshold.

    As in NVIDIA's own implementation (pytorch-quantization), the first bin's count is replaced by
    the second's before the search: after a ReLU, exact zeros fill bin 0 (47% of values in the
    starter model) and would otherwise pull the threshold down to a fraction of the range
    (measured: 0.558 held-out mIoU instead of 0.944, docs/decisions/0004).
    """
    bins = np.array(hist, dtype=np.float64)
    if bins.size > 1:
        bins[0] = bins[1]
    total = bins.size
    if total < start:
        raise ValueError(f"histogram needs at least {start} bins, got {total}")
    tail = np.concatenate([np.cumsum(bins[::-1])[::-1], [0.0]])  # tail[i] = sum(bins[i:])
    best, best_i = math.inf, total
    for i in range(start, total + 1):
        sliced = bins[:i]
        p = sliced.copy()
        p[i - 1] += tail[i]
        if p.sum() == 0:
            continue
        merged = i // levels
        starts = np.arange(levels) * merged
        lengths = np.full(levels, merged)
        lengths[-1] = i - starts[-1]  # the remainder joins the last level, as TensorRT does
        nonzero = (sliced != 0).astype(np.float64)
        sums = np.add.reduceat(sliced, starts)
        counts = np.add.reduceat(nonzero, starts)
        per_bin = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        q = np.repeat(per_bin, lengths) * nonzero
        if q.sum() == 0:
            continue
        divergence = _kl(p / p.sum(), q / q.sum())
        if divergence < best:
            best, best_i = divergence, i
    return best_i


def entropy(seen: Observed, bins: int = HISTOGRAM_BINS) -> Range:
    """Symmetric threshold on |x| (a non-negative tensor keeps its lower end at its minimum).

    Falls back to min/max where the search means nothing: fewer samples than histogram bins (a
    squeeze-and-excitation tensor of 16 values per image), or a threshold that clips more than
    `MAX_CLIPPED` of the values — the search is there to clip rare outliers, and a tensor far from
    zero (a sigmoid's output in [0.065, 0.906]) otherwise got [0.065, 0.0655], which left the person
    model's INT8 version at 0.26 pixel agreement with FP32."""
    top = max(abs(seen.lo), abs(seen.hi))
    if top == 0 or seen.samples.size < bins:
        return minmax(seen)
    hist, edges = np.histogram(np.abs(seen.samples), bins=bins, range=(0.0, top))
    threshold = float(edges[entropy_threshold(hist)])
    if np.count_nonzero(np.abs(seen.samples) > threshold) > MAX_CLIPPED * seen.samples.size:
        return minmax(seen)
    return Range(-threshold if seen.lo < 0 else seen.lo, threshold)


def log2(seen: Observed) -> Range:
    """The min/max range; `qparams(..., power_of_two=True)` then rounds its scale up to 2^k."""
    return minmax(seen)


def choose(method: Method, seen: Observed, p: float = 99.99) -> Range:
    if method == "minmax":
        return minmax(seen)
    if method == "percentile":
        return percentile(seen, p)
    if method == "entropy":
        return entropy(seen)
    if method == "log2":
        return log2(seen)
    raise ValueError(f"unknown calibration method {method!r}")


def qparams(r: Range, qmin: int = 0, qmax: int = 255, power_of_two: bool = False) -> tuple[float, int]:
    """Affine quantization parameters covering `r` (widened to contain 0, so zero is exact)."""
    lo, hi = min(r.lo, 0.0), max(r.hi, 0.0)
    scale = (hi - lo) / (qmax - qmin)
    if scale <= 0 or not math.isfinite(scale):
        scale = 1e-8
    if power_of_two:
        scale = 2.0 ** math.ceil(math.log2(scale))
    zero_point = int(min(max(round(qmin - lo / scale), qmin), qmax))
    return scale, zero_point
