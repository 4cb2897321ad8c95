"""ONNX versions merge initializer by initializer when their graphs match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from maskline.models import person
from maskline.services.weights import onnx_weights
from maskline.services.weights.methods import MergeOptions
from maskline.services.weights.streaming import IncompatibleModels, merge_states

pytestmark = pytest.mark.unit


def perturbed(seed: int) -> bytes:
    model = onnx.load(str(person.ONNX))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(array + rng.normal(0, 0.01, array.shape).astype(np.float32), init.name))
    return model.SerializeToString()


def initializers(data: bytes) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load_from_string(data).graph.initializer}


def test_the_average_of_two_onnx_models_is_their_initializers_averaged(tmp_path: Path) -> None:
    a, b = perturbed(1), perturbed(2)
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for data, path in zip((a, b), paths, strict=True):
        onnx_weights.check_same_graph(a, data, "b", "a")
        onnx_weights.save_state(data, path)
    merged = onnx_weights.with_state(a, merge_states(paths, ["a", "b"], "avg", MergeOptions()))
    x, y, m = initializers(a), initializers(b), initializers(merged)
    floats = [name for name in x if x[name].dtype == np.float32]
    assert floats and all(np.allclose(m[name], (x[name] + y[name]) / 2, atol=1e-6) for name in floats)
    assert onnx_weights.signature(merged) == onnx_weights.signature(a)


def test_graphs_that_differ_are_refused_naming_the_node() -> None:
    other = onnx.load(str(person.ONNX))
    relu = next(node for node in other.graph.node if node.op_type == "Relu")
    relu.op_type = "Sigmoid"
    with pytest.raises(IncompatibleModels, match=r"the ONNX graphs differ at node \d+: Relu.* in a, Sigmoid.* in b"):
        onnx_weights.check_same_graph(person.ONNX.read_bytes(), other.SerializeToString(), "b", "a")
