"""ONNX models quantized with the platform's calibrators through ONNX Runtime's QDQ quantizer."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from maskline.models import person
from maskline.services.quantize import onnx_qdq
from maskline.shared.images.codec import to_model_input

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx_qdq.load(person.ONNX.read_bytes())


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    photo = (person.FOLDER / "samples" / "astronaut.jpg").read_bytes()
    x = to_model_input(photo, (256, 256))
    return [x, x[..., ::-1].copy()]


@pytest.fixture(scope="module")
def observed(model: onnx.ModelProto, images: list[np.ndarray]) -> dict[str, onnx_qdq.Observed]:
    return onnx_qdq.observe(model, images)


def scales(qdq: bytes) -> dict[str, float]:
    graph = onnx.load_from_string(qdq).graph
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    return {n.input[0]: float(constants[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"}


def test_every_float_tensor_is_observed(model: onnx.ModelProto, observed: dict[str, onnx_qdq.Observed]) -> None:
    assert "image" in observed and len(observed) > 100
    image = observed["image"]
    assert 0.0 <= image.lo < image.hi <= 1.0 and image.samples.size > 0


def test_the_job_s_ranges_are_the_ones_quantized_with(model: onnx.ModelProto, observed: dict[str, onnx_qdq.Observed]) -> None:
    chosen = onnx_qdq.ranges(observed, "minmax", 99.99)
    qdq = onnx_qdq.quantize(model, chosen, onnx_qdq.Plan("int8", per_channel=True))
    found = scales(qdq)
    image = chosen["image"]
    assert found["image"] == pytest.approx((max(image.hi, 0) - min(image.lo, 0)) / 255, rel=1e-5)


def test_log2_gives_power_of_two_activation_scales(model: onnx.ModelProto, observed: dict[str, onnx_qdq.Observed]) -> None:
    qdq = onnx_qdq.quantize(model, onnx_qdq.ranges(observed, "log2", 99.99), onnx_qdq.Plan("int8", per_channel=True))
    activations = {name: s for name, s in scales(qdq).items() if name in observed}
    assert activations
    assert all(math.log2(s) == pytest.approx(round(math.log2(s)), abs=1e-6) for s in activations.values())


def test_keep_float_and_hybrid_leave_nodes_in_float(model: onnx.ModelProto, observed: dict[str, onnx_qdq.Observed]) -> None:
    chosen = onnx_qdq.ranges(observed, "minmax", 99.99)
    full = onnx_qdq.quantize(model, chosen, onnx_qdq.Plan("int8", per_channel=True))
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    kept = onnx_qdq.quantize(model, chosen, onnx_qdq.Plan("int8", per_channel=True, keep_float=(first_conv,)))
    assert first_conv in {layer.name for layer in onnx_qdq.quantized_nodes(model, full)}
    assert first_conv not in {layer.name for layer in onnx_qdq.quantized_nodes(model, kept)}
    hybrid = onnx_qdq.quantize(model, chosen, onnx_qdq.Plan("hybrid", per_channel=True))
    assert {layer.type for layer in onnx_qdq.quantized_nodes(model, hybrid, hybrid=True)} <= set(onnx_qdq.WEIGHTED_OPS)
    with pytest.raises(onnx_qdq.OnnxQuantizationError, match="no node nope"):
        onnx_qdq.quantize(model, chosen, onnx_qdq.Plan("int8", per_channel=True, keep_float=("nope",)))


def test_step_compares_each_quantized_node_and_the_output(model: onnx.ModelProto, observed, images) -> None:  # type: ignore[no-untyped-def]
    chosen = onnx_qdq.ranges(observed, "percentile", 99.99)
    qdq = onnx_qdq.quantize(model, chosen, onnx_qdq.Plan("int8", per_channel=True))
    report = onnx_qdq.step(model, qdq, images[:1])
    assert report.layers and report.output.sqnr_db > 5 and 0.9 < report.pixel_agreement <= 1.0
    assert {row.type for row in report.layers} >= {"Conv"}


def test_the_layers_that_write_the_scores_stay_float_by_default(model: onnx.ModelProto) -> None:
    head = onnx_qdq.output_head(model)
    assert head[0] == next(n.name for n in reversed(model.graph.node) if n.op_type == "ConvTranspose")
    assert head[-1] == model.graph.node[-1].name
