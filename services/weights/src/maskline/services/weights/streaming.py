"""Merge state dicts tensor by tensor from memory-mapped files.

Each input is opened with `torch.load(mmap=True)`: its tensors stay on disk until touched, so
the memory merging allocates is the output plus one key's worth of inputs, not all models.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from maskline.services.weights.methods import NEEDS_BASE, MergeOptions, Method, merge_integer, merge_tensor


class IncompatibleModels(ValueError):
    """The models do not have the same keys, shapes and dtypes; the message names the first mismatch."""


def open_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", mmap=True, weights_only=True)  # type: ignore[no-any-return]


def check_compatible(states: Sequence[dict[str, torch.Tensor]], names: Sequence[str]) -> None:
    reference, ref_name = states[0], names[0]
    for state, name in zip(states[1:], names[1:], strict=True):
        missing = [k for k in reference if k not in state]
        extra = [k for k in state if k not in reference]
        if missing or extra:
            key = (missing or extra)[0]
            where = f"missing from {name}" if missing else f"only in {name}"
            raise IncompatibleModels(f"key {key!r} is {where} (compared with {ref_name})")
        for key, tensor in reference.items():
            other = state[key]
            if other.shape != tensor.shape:
                raise IncompatibleModels(f"{key!r}: shape {tuple(tensor.shape)} in {ref_name} but {tuple(other.shape)} in {name}")
            if other.dtype != tensor.dtype:
                raise IncompatibleModels(f"{key!r}: dtype {tensor.dtype} in {ref_name} but {other.dtype} in {name}")


def merge_states(
    paths: Sequence[Path], names: Sequence[str], method: Method, options: MergeOptions, base_path: Path | None = None
) -> dict[str, torch.Tensor]:
    if len(paths) < 2:
        raise ValueError("merging needs at least two models")
    if method == "weighted" and (len(options.weights) != len(paths) or min(options.weights) < 0 or sum(options.weights) <= 0):
        raise ValueError(f"weighted merge needs {len(paths)} non-negative weights with a positive sum")
    if method in NEEDS_BASE and base_path is None:
        raise ValueError(f"{method} needs a base model")
    states = [open_state(p) for p in paths]
    base = open_state(base_path) if base_path is not None else None
    check_compatible(states + ([base] if base is not None else []), [*names, *(["base"] if base is not None else [])])
    merged: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key in states[0]:
            tensors = [s[key] for s in states]
            if tensors[0].is_floating_point():
                merged[key] = merge_tensor(method, tensors, options, base[key] if base is not None else None).contiguous()
            else:
                merged[key] = merge_integer(key, tensors)
    return merged
