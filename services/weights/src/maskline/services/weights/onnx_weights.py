"""ONNX models as state dicts: their initializers by name, so the merge methods apply to them as they
do to TorchScript weights. Two ONNX models merge only when their graphs match: the same operators in
the same order, reading the same initializers (names, shapes and types are checked by the merge)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from maskline.services.weights.streaming import IncompatibleModels


def save_state(data: bytes, target: Path) -> None:
    """An ONNX model's initializers as a state-dict file (read back memory-mapped by the merge)."""
    model = onnx.load_from_string(data)
    state = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in model.graph.initializer}
    torch.save(state, target)


def signature(data: bytes) -> list[tuple[str, tuple[str, ...]]]:
    """Each node's operator and inputs, in order: what must match for two graphs to merge."""
    return [(node.op_type, tuple(node.input)) for node in onnx.load_from_string(data).graph.node]


def check_same_graph(first: bytes, other: bytes, name: str, first_name: str) -> None:
    a, b = signature(first), signature(other)
    if len(a) != len(b):
        raise IncompatibleModels(f"the ONNX graphs differ: {first_name} has {len(a)} nodes, {name} {len(b)}")
    for index, (x, y) in enumerate(zip(a, b, strict=True)):
        if x != y:
            raise IncompatibleModels(
                f"the ONNX graphs differ at node {index}: {x[0]}{list(x[1])} in {first_name}, {y[0]}{list(y[1])} in {name}"
            )


def with_state(first: bytes, merged: dict[str, torch.Tensor]) -> bytes:
    """The first model's graph carrying the merged initializers."""
    model = onnx.load_from_string(first)
    for init in model.graph.initializer:
        array = merged[init.name].numpy()
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array, dtype=numpy_helper.to_array(init).dtype), init.name))
    return bytes(model.SerializeToString())
