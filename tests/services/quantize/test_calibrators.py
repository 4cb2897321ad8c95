"""Known-answer tests for each calibrator (pure NumPy, no torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maskline.services.quantize import calibrators as cal
from maskline.services.quantize.calibrators import Observed, Range

pytestmark = pytest.mark.unit


def observed(values: np.ndarray) -> Observed:
    v = np.asarray(values, dtype=np.float32)
    return Observed(lo=float(v.min()), hi=float(v.max()), samples=v)


def test_minmax_is_the_observed_extremes() -> None:
    assert cal.minmax(observed(np.array([-1.0, 0.5, 3.0]))) == Range(-1.0, 3.0)


def test_qparams_of_a_signed_range() -> None:
    scale, zp = cal.qparams(Range(-1.0, 3.0))
    assert scale == pytest.approx(4 / 255)
    assert zp == 64  # round(63.75): zero lands exactly on an integer


def test_qparams_widen_a_positive_range_to_contain_zero() -> None:
    assert cal.qparams(Range(2.0, 4.0)) == (pytest.approx(4 / 255), 0)


def test_percentile_clips_the_tails() -> None:
    seen = observed(np.arange(10001, dtype=np.float32))
    r = cal.percentile(seen, 99.99)
    assert r.hi == pytest.approx(9999.0)
    assert r.lo == 0.0  # never negative: the lower end stays the observed minimum


def test_percentile_on_a_signed_tensor_clips_both_ends() -> None:
    seen = observed(np.arange(-5000, 5001, dtype=np.float32))
    r = cal.percentile(seen, 99.0)
    assert r.lo == pytest.approx(-4900.0) and r.hi == pytest.approx(4900.0)


def test_log2_scale_is_the_next_power_of_two() -> None:
    r = cal.log2(observed(np.array([0.0, 3.0])))
    scale, zp = cal.qparams(r, power_of_two=True)
    assert scale == 2.0**-6  # 3/255 = 0.01176 → 1/64
    assert zp == 0
    assert math.log2(scale).is_integer()


def test_log2_keeps_the_range_covered() -> None:
    r = Range(-0.7, 1.3)
    scale, zp = cal.qparams(r, power_of_two=True)
    assert (0 - zp) * scale <= -0.7 and (255 - zp) * scale >= 1.3


def _entropy_reference(hist: np.ndarray) -> int:
    """TensorRT's algorithm written out loop by loop, to check the vectorised one."""
    hist = hist.copy()
    hist[0] = hist[1]  # the zero bin, as NVIDIA's implementation treats it
    best, best_i = math.inf, len(hist)
    for i in range(128, len(hist) + 1):
        p = [float(c) for c in hist[:i]]
        p[i - 1] += float(sum(hist[i:]))
        merged = i // 128
        q = [0.0] * i
        for j in range(128):
            start = j * merged
            stop = i if j == 127 else start + merged
            chunk = hist[start:stop]
            nonzero = sum(1 for c in chunk if c != 0)
            for k in range(start, stop):
                q[k] = float(sum(chunk)) / nonzero if hist[k] != 0 else 0.0
        ps, qs = sum(p), sum(q)
        divergence = 0.0
        for a, b in zip(p, q, strict=True):
            if a > 0:
                divergence = math.inf if b == 0 else divergence + (a / ps) * math.log((a / ps) / (b / qs))
        if divergence < best:
            best, best_i = divergence, i
    return best_i


def test_entropy_mass_below_the_first_candidate_picks_bin_128() -> None:
    hist = np.zeros(2048, dtype=np.int64)
    hist[:100] = np.arange(1, 101)
    assert cal.entropy_threshold(hist) == 128


def test_entropy_uniform_histogram_keeps_the_whole_range() -> None:
    assert cal.entropy_threshold(np.full(2048, 7, dtype=np.int64)) == 2048


def test_entropy_matches_the_loop_by_loop_reference() -> None:
    rng = np.random.default_rng(3)
    values = np.abs(rng.normal(0, 1, 50_000))
    hist, _ = np.histogram(values, bins=512, range=(0, values.max()))
    assert cal.entropy_threshold(hist) == _entropy_reference(hist)


def test_entropy_is_not_fooled_by_relu_zeros() -> None:
    # Half the values exactly zero (a ReLU output), the rest spread up to 10: the threshold must
    # keep most of that spread instead of collapsing onto the zero spike.
    rng = np.random.default_rng(5)
    values = np.concatenate([np.zeros(100_000), rng.exponential(2.0, 100_000).clip(0, 10)]).astype(np.float32)
    r = cal.entropy(observed(values))
    assert r.lo == 0.0 and r.hi > 5.0


def test_entropy_clips_a_rare_outlier_that_minmax_keeps() -> None:
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(0, 1, 200_000), [60.0]]).astype(np.float32)
    seen = observed(values)
    r = cal.entropy(seen)
    assert cal.minmax(seen).hi == 60.0
    assert 2.0 < r.hi < 15.0  # the bulk is kept, the lone outlier clipped
    assert r.lo == -r.hi  # signed tensor: symmetric threshold


def test_entropy_never_gives_a_range_below_a_positive_tensors_minimum() -> None:
    # A sigmoid's output far from zero: the smallest candidate threshold lies below its minimum.
    rng = np.random.default_rng(6)
    values = np.concatenate([rng.uniform(0.065, 0.1, 10_000), rng.uniform(0.1, 0.9, 100)]).astype(np.float32)
    seen = observed(values)
    r = cal.entropy(seen)
    assert r.hi > seen.lo and r == cal.minmax(seen)


def test_entropy_keeps_min_max_when_there_are_fewer_samples_than_bins() -> None:
    seen = observed(np.linspace(-1.0, 3.0, 96, dtype=np.float32))
    assert cal.entropy(seen) == cal.minmax(seen)


def test_choose_dispatches_and_rejects_unknown_methods() -> None:
    seen = observed(np.array([0.0, 1.0]))
    assert {m: cal.choose(m, seen).hi for m in cal.METHODS}["minmax"] == 1.0
    with pytest.raises(ValueError, match="unknown calibration method"):
        cal.choose("bogus", seen)  # type: ignore[arg-type]
