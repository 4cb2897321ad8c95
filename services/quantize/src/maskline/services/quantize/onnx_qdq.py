"""Quantize a model without its source code: an ONNX graph, QDQ through ONNX Runtime.

The ranges come from the platform's own calibrators (`calibrators.py`: minmax, entropy, percentile,
log2 with power-of-two scales), not from ONNX Runtime's: every float tensor of the graph is observed
on the calibration images (the graph is run with each one added as an output), each range chosen
by the job's method, and handed to `quantize_static` as a calibration cache, its documented way to
take ranges computed elsewhere. The result is a QDQ model (QuantizeLinear/DequantizeLinear pairs
around int8 operators) that ONNX Runtime runs with int8 kernels on the CPU and that its CUDA and
TensorRT execution providers run in int8 on a GPU.

STEP and CROSS are the same reports as for PyTorch models, on the graph's node names: STEP compares
each quantized node's output in the float and the QDQ network (each fed its own upstream); CROSS
quantizes one node alone, or all but one, and measures the final output.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import onnx
import onnxruntime
import torch
from numpy.typing import NDArray
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

from maskline.services.quantize import calibrators
from maskline.services.quantize.calibrators import Method, Observed, Range
from maskline.services.quantize.graph import Graph, Node
from maskline.services.quantize.reports import Error, TensorStats, agreement, error, stats

#: Per tensor and image, values kept for the histogram-based calibrators (entropy, percentile).
SAMPLES_PER_IMAGE = 20_000
#: "hybrid": only the operators that carry weights run in int8; the elementwise rest stays float.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")

Images = Sequence[NDArray[np.float32]]
#: 7-bit weights: x86 CPUs without VNNI (AVX2, as on the machines here) multiply u8 x s8 pairs into
#: saturating 16-bit sums; ONNX Runtime's documentation advises reduce_range there. Measured on the
#: person model (docs/benchmarks.md): pixel agreement with FP32 0.929 without, 0.957 with.
REDUCE_RANGE = True


class OnnxQuantizationError(ValueError):
    """The graph cannot be quantized as asked (no float input, an unknown node name...)."""


def _session(model: bytes | onnx.ModelProto) -> onnxruntime.InferenceSession:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """The graph input and every float tensor a node produces (shape computations are not observed)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    produced = [name for node in model.graph.node for name in node.output if types.get(name) == TensorProto.FLOAT]
    return [model.graph.input[0].name, *produced]


def withoutputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of the graph that also returns `names` (to read intermediate tensors)."""
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    present = {o.name for o in augmented.graph.output}
    for name in names:
        if name not in present:
            augmented.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return augmented


def _values(model: onnx.ModelProto, names: Sequence[str], images: Images) -> dict[str, NDArray[np.float32]]:
    """`names` over all images, concatenated along the batch."""
    session = _session(withoutputs(model, names))
    wanted = set(names)
    found: dict[str, list[NDArray[np.float32]]] = {name: [] for name in names}
    for image in images:
        values = session.run(None, {model.graph.input[0].name: image})
        for output, value in zip(session.get_outputs(), values, strict=True):
            if output.name in wanted:
                found[output.name].append(np.asarray(value, dtype=np.float32))
    # a scalar (a transformer's attention scale) has no batch axis: one value per image, side by side
    return {name: np.concatenate([np.atleast_1d(part) for part in parts]) for name, parts in found.items()}


def observe(model: onnx.ModelProto, images: Images, progress: Callable[[int], None] | None = None) -> dict[str, Observed]:
    """Extremes and a sample of values of every float tensor over the calibration images."""
    names = float_tensors(model)
    session = _session(withoutputs(model, names))
    index = {o.name: i for i, o in enumerate(session.get_outputs())}
    rng = np.random.default_rng(0)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    samples: dict[str, list[NDArray[np.float32]]] = {name: [] for name in names}
    for seen, image in enumerate(images, 1):
        values = session.run(None, {model.graph.input[0].name: image})
        for name in names:
            flat = np.asarray(values[index[name]], dtype=np.float32).ravel()
            lo[name] = min(lo.get(name, np.inf), float(flat.min()))
            hi[name] = max(hi.get(name, -np.inf), float(flat.max()))
            samples[name].append(flat if flat.size <= SAMPLES_PER_IMAGE else rng.choice(flat, SAMPLES_PER_IMAGE, replace=False))
        if progress:
            progress(seen)
    return {name: Observed(lo[name], hi[name], np.concatenate(samples[name])) for name in names}


def ranges(observed: dict[str, Observed], method: Method, percentile: float) -> dict[str, Range]:
    """The range of every tensor by the job's calibrator; log2 widens it until its uint8 scale is a power of two."""
    chosen = {}
    for name, seen in observed.items():
        picked = calibrators.choose(method, seen, percentile)
        if method == "log2":
            scale, zero_point = calibrators.qparams(picked, power_of_two=True)
            picked = Range((0 - zero_point) * scale, (255 - zero_point) * scale)
        chosen[name] = picked
    return chosen


def output_head(model: onnx.ModelProto) -> tuple[str, ...]:
    """The last weighted node and every node after it (ONNX graphs are in topological order): the
    layers that write the class scores stay float by default. Their decision boundary is where
    rounding flips pixels — on the person model, keeping them float raised pixel agreement with FP32
    from 0.959 to 0.986 (minmax, 6 photos) for one layer of 54 convolutions."""
    nodes = list(model.graph.node)
    last = max((i for i, node in enumerate(nodes) if node.op_type in WEIGHTED_OPS), default=len(nodes))
    return tuple(node.name for node in nodes[last:])


@dataclass(frozen=True)
class Plan:
    """What to quantize: all nodes ONNX Runtime can (int8) or the weighted ones (hybrid), less `keep_float`."""

    precision: Literal["int8", "hybrid"]
    per_channel: bool
    keep_float: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    """Quantize just these nodes (CROSS)."""


def quantize(model: onnx.ModelProto, chosen: dict[str, Range], plan: Plan) -> bytes:
    """The QDQ model, through ONNX Runtime's `quantize_static` fed the platform's ranges."""
    nodes = {node.name for node in model.graph.node}
    unknown = [name for name in (*plan.keep_float, *plan.only) if name not in nodes]
    if unknown:
        raise OnnxQuantizationError(f"the graph has no node {', '.join(unknown)} (see the model graph for names)")
    data = TensorsData(
        CalibrationMethod.MinMax,
        {name: TensorData(lowest=np.float32(r.lo), highest=np.float32(r.hi)) for name, r in chosen.items()},
    )
    with tempfile.TemporaryDirectory(prefix="maskline-qdq-") as folder:
        cache, output = Path(folder) / "ranges.json", Path(folder) / "int8.onnx"
        save_tensors_data(data, cache)
        quantize_static(
            model,
            output,
            None,  # no calibration run of its own: the ranges come from the cache
            quant_format=QuantFormat.QDQ,
            per_channel=plan.per_channel,
            reduce_range=REDUCE_RANGE,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=cache,
            op_types_to_quantize=list(WEIGHTED_OPS) if plan.precision == "hybrid" else None,
            nodes_to_exclude=list(plan.keep_float),
            nodes_to_quantize=list(plan.only),
        )
        return output.read_bytes()


@dataclass(frozen=True)
class Layer:
    """A quantized node: its name and type, and the tensor both graphs compute for it."""

    name: str
    type: str
    tensor: str


def quantized_nodes(float_model: onnx.ModelProto, qdq: bytes, hybrid: bool = False) -> list[Layer]:
    """The nodes of the quantized operator types that run on dequantized inputs in the QDQ graph, in
    graph order. The compared tensor is the QDQ node's output: where ONNX Runtime folded an
    activation into the node (Conv + Relu), that is the activation's output, present in both graphs."""
    graph = onnx.load_from_string(qdq).graph
    dequantized = {o for node in graph.node if node.op_type == "DequantizeLinear" for o in node.output}
    floats = set(float_tensors(float_model))  # not shape arithmetic that merely reads a quantized tensor
    requantized = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    planned = set(WEIGHTED_OPS) if hybrid else set(QDQRegistry) | set(QLinearOpsRegistry)

    def quantized(node: onnx.NodeProto) -> bool:
        if node.op_type in WEIGHTED_OPS:  # its weights are int8 (a node kept in float holds float weights)
            return len(node.input) > 1 and node.input[1] in dequantized
        return bool(set(node.input) & dequantized) and node.output[0] in requantized

    return [
        Layer(node.name, node.op_type, node.output[0])
        for node in graph.node
        if node.op_type in planned and node.output[0] in floats and quantized(node)
    ]


# -- reports -------------------------------------------------------------------------------------


class OnnxStepLayer(msgspec.Struct, frozen=True, kw_only=True):
    layer: str
    type: str
    error: Error
    """Float output vs int8 output (dequantized), each network fed its own upstream."""
    activation_float: TensorStats
    activation_int8: TensorStats
    output_scale: float | None
    output_zero_point: int | None


class OnnxStepReport(msgspec.Struct, frozen=True, kw_only=True):
    images: int
    layers: list[OnnxStepLayer]
    output: Error
    pixel_agreement: float
    format: str = "onnx"


class OnnxCrossLayer(msgspec.Struct, frozen=True, kw_only=True):
    layer: str
    only_this_int8: Error
    only_this_int8_agreement: float
    all_but_this_int8: Error
    all_but_this_int8_agreement: float


class OnnxCrossReport(msgspec.Struct, frozen=True, kw_only=True):
    images: int
    int8_output: Error
    layers: list[OnnxCrossLayer]
    """The layers with the largest STEP error (at most `limit`), worst first."""
    format: str = "onnx"


def outputs(model: bytes | onnx.ModelProto, images: Images) -> torch.Tensor:
    session = _session(model)
    name = session.get_inputs()[0].name
    return torch.cat([torch.from_numpy(session.run(None, {name: image})[0]) for image in images])


def _qparams(qdq: onnx.ModelProto, tensor: str) -> tuple[float | None, int | None]:
    """The scale and zero point the QDQ graph quantizes `tensor` with, if it does."""
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in qdq.graph.initializer}
    for node in qdq.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == tensor:
            scale, zero = constants.get(node.input[1]), constants.get(node.input[2]) if len(node.input) > 2 else None
            return (float(scale) if scale is not None else None), (int(zero) if zero is not None else None)
    return None, None


def step(float_model: onnx.ModelProto, qdq: bytes, images: Images, hybrid: bool = False) -> OnnxStepReport:
    layers = quantized_nodes(float_model, qdq, hybrid)
    qdq_model = onnx.load_from_string(qdq)
    names = [layer.tensor for layer in layers]
    reference, quantized = _values(float_model, names, images), _values(qdq_model, names, images)
    rows = []
    for layer in layers:
        a, b = torch.from_numpy(reference[layer.tensor]), torch.from_numpy(quantized[layer.tensor])
        scale, zero_point = _qparams(qdq_model, layer.tensor)
        rows.append(
            OnnxStepLayer(
                layer=layer.name,
                type=layer.type,
                error=error(a, b),
                activation_float=stats(a),
                activation_int8=stats(b),
                output_scale=scale,
                output_zero_point=zero_point,
            )
        )
    float_out, int8_out = outputs(float_model, images), outputs(qdq, images)
    return OnnxStepReport(
        images=len(images), layers=rows, output=error(float_out, int8_out), pixel_agreement=agreement(float_out, int8_out)
    )


def cross(
    float_model: onnx.ModelProto, chosen: dict[str, Range], plan: Plan, report: OnnxStepReport, images: Images, limit: int = 8
) -> OnnxCrossReport:
    """One quantization per layer and direction: only the `limit` layers STEP found worst."""
    float_out = outputs(float_model, images)
    worst = sorted(report.layers, key=lambda row: row.error.sqnr_db)[:limit]
    rows = []
    for row in worst:
        alone = outputs(quantize(float_model, chosen, Plan(plan.precision, plan.per_channel, only=(row.layer,))), images)
        keep = (*plan.keep_float, row.layer)
        others = outputs(quantize(float_model, chosen, Plan(plan.precision, plan.per_channel, keep_float=keep)), images)
        rows.append(
            OnnxCrossLayer(
                layer=row.layer,
                only_this_int8=error(float_out, alone),
                only_this_int8_agreement=agreement(float_out, alone),
                all_but_this_int8=error(float_out, others),
                all_but_this_int8_agreement=agreement(float_out, others),
            )
        )
    return OnnxCrossReport(images=len(images), int8_output=report.output, layers=rows)


def describe(model: onnx.ModelProto) -> Graph:
    """The graph as the platform draws it: one node per operator, edges along the tensors."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int] | None] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims] if dims else None
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    producer = {name: node.name for node in model.graph.node for name in node.output}
    nodes = [
        Node(id=i.name, op="placeholder", type="input", target=i.name, shape=shapes.get(i.name), dtype="float32", parameters=0)
        for i in model.graph.input
    ]
    edges: list[tuple[str, str]] = []
    for node in model.graph.node:
        nodes.append(
            Node(
                id=node.name,
                op="call_module" if node.op_type in WEIGHTED_OPS else "call_function",
                type=node.op_type,
                target=node.name,
                shape=shapes.get(node.output[0]),
                dtype=None,
                parameters=sum(sizes.get(name, 0) for name in node.input),
            )
        )
        for name in node.input:
            if name in producer:
                edges.append((producer[name], node.name))
            elif name == model.graph.input[0].name:
                edges.append((name, node.name))
    return Graph(nodes=nodes, edges=edges)


def named(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every node gets a name (exporters may leave them empty): reports and keep_float refer to them."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    return model


def load(data: bytes) -> onnx.ModelProto:
    return named(onnx.load_from_string(data))


def as_bytes(model: onnx.ModelProto) -> bytes:
    return bytes(model.SerializeToString())
