"""Element-wise ways to merge the same tensor of several models (one key at a time).

avg, max and absmax are exactly the study's definitions; weighted is FedAvg (weights = sample
counts); median is the element-wise median; task arithmetic and TIES work on task vectors
(model - base) against a shared base model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import msgspec
import torch

Method = Literal["avg", "max", "absmax", "weighted", "median", "task_arithmetic", "ties"]
METHODS: tuple[Method, ...] = ("avg", "max", "absmax", "weighted", "median", "task_arithmetic", "ties")
NEEDS_BASE: frozenset[str] = frozenset({"task_arithmetic", "ties"})


class MergeOptions(msgspec.Struct, frozen=True, kw_only=True):
    weights: tuple[float, ...] = ()
    """`weighted`: one non-negative weight per model (e.g. its sample count)."""
    scale: float = 1.0
    """`task_arithmetic` / `ties`: lambda, the factor on the merged task vector."""
    density: float = 0.2
    """`ties`: fraction of each task vector's largest-magnitude entries kept (the rest trimmed)."""


# avg, max, absmax and weighted accumulate into one output tensor instead of stacking the inputs,
# so a key costs one tensor of extra memory whatever the number of models.
def _avg(ts: Sequence[torch.Tensor], o: MergeOptions) -> torch.Tensor:
    out = ts[0].clone()
    for t in ts[1:]:
        out += t
    return out.div_(len(ts))


def _max(ts: Sequence[torch.Tensor], o: MergeOptions) -> torch.Tensor:
    out = ts[0].clone()
    for t in ts[1:]:
        torch.maximum(out, t, out=out)
    return out


def _absmax(ts: Sequence[torch.Tensor], o: MergeOptions) -> torch.Tensor:
    out = ts[0].clone()
    for t in ts[1:]:
        out = torch.where(t.abs() > out.abs(), t, out)  # ties keep the earlier model's value
    return out


def _weighted(ts: Sequence[torch.Tensor], o: MergeOptions) -> torch.Tensor:
    out = ts[0] * o.weights[0]
    for t, w in zip(ts[1:], o.weights[1:], strict=True):
        out.add_(t, alpha=w)
    return out.div_(sum(o.weights))


MEDIAN_CHUNK = 1 << 20


def _median(ts: Sequence[torch.Tensor], o: MergeOptions) -> torch.Tensor:
    """Element-wise median (the mean of the two middle values for an even count), computed in
    chunks of a million elements so the extra memory is models x chunk, not models x tensor."""
    flats = [t.reshape(-1) for t in ts]
    out = torch.empty_like(flats[0])
    n, lo, hi = len(ts), (len(ts) - 1) // 2, len(ts) // 2
    for start in range(0, out.numel(), MEDIAN_CHUNK):
        block = torch.stack([f[start : start + MEDIAN_CHUNK] for f in flats]).sort(dim=0).values
        out[start : start + MEDIAN_CHUNK] = block[lo] if n % 2 else (block[lo] + block[hi]) / 2
    return out.reshape(ts[0].shape)


PLAIN: dict[str, Callable[[Sequence[torch.Tensor], MergeOptions], torch.Tensor]] = {
    "avg": _avg,
    "max": _max,
    "absmax": _absmax,
    "weighted": _weighted,
    "median": _median,
}


def _trim(task: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the `density` fraction of entries with the largest magnitude (TIES step 1)."""
    flat = task.abs().flatten()
    keep = max(1, round(density * flat.numel()))
    if keep >= flat.numel():
        return task
    threshold = flat.kthvalue(flat.numel() - keep + 1).values
    return torch.where(task.abs() >= threshold, task, torch.zeros_like(task))


def merge_tensor(
    method: Method, tensors: Sequence[torch.Tensor], options: MergeOptions, base: torch.Tensor | None = None
) -> torch.Tensor:
    """Merge one floating-point tensor across models."""
    if method in PLAIN:
        return PLAIN[method](tensors, options)
    assert base is not None, f"{method} needs a base model"
    tasks = torch.stack([t - base for t in tensors])
    if method == "task_arithmetic":
        return base + options.scale * tasks.sum(0)
    # TIES-merging (Yadav et al. 2023): trim, elect a sign per entry, mean of the agreeing entries.
    trimmed = torch.stack([_trim(t, options.density) for t in tasks])
    sign = torch.sign(trimmed.sum(0))
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    merged = (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)
    return base + options.scale * merged


def merge_integer(key: str, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Integer buffers are never averaged. `num_batches_tracked` (BatchNorm) takes the maximum:
    the merged statistics stand for at least that many batches; any other integer buffer must be
    identical in every model."""
    if key.endswith("num_batches_tracked"):
        return torch.stack(list(tensors)).amax(0)
    first = tensors[0]
    for i, t in enumerate(tensors[1:], 2):
        if not torch.equal(first, t):
            raise ValueError(f"integer tensor {key!r} differs between model 1 and model {i}; it cannot be merged")
    return first.clone()
