"""Rebuild a float TFLite graph as a PyTorch module, op by op, in NCHW.

Generic converters (tf2onnx, onnx2torch via ONNX) stop at MediaPipe's custom op
`Convolution2DTransposeBias`; this reads the flatbuffer with the `tflite` package and maps the
small op set of MediaPipe's segmentation networks onto torch functions, so the custom op is one
`conv_transpose2d` like any other. The module is then traced to TorchScript and exported to ONNX.
Unknown ops are refused by name: a new network fails loudly instead of converting wrongly.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tflite
import torch
import torch.nn.functional as F

# TFLite's own enum for the custom op's raw options (TfLitePadding), not the schema's Padding.
_CUSTOM_PADDING = {1: "SAME", 2: "VALID"}
_SCHEMA_PADDING = {tflite.Padding.SAME: "SAME", tflite.Padding.VALID: "VALID"}
_NUMPY_TYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16, tflite.TensorType.INT32: np.int32}


@dataclass
class Step:
    """One op of the graph: its kind, tensor indices and options."""

    kind: str
    inputs: list[int]
    output: int
    options: dict[str, Any] = field(default_factory=dict)


def _opcode_names(model: Any) -> list[str]:
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            names.append(code.CustomCode().decode())
        else:  # newer files keep the code in BuiltinCode, older ones in DeprecatedBuiltinCode
            names.append(tflite.opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode())))
    return names


def _options(op: Any, cls: Any) -> Any:
    table = op.BuiltinOptions()
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _activation(code: int) -> str:
    names = {
        tflite.ActivationFunctionType.NONE: "none",
        tflite.ActivationFunctionType.RELU: "relu",
        tflite.ActivationFunctionType.RELU6: "relu6",
    }
    if code not in names:
        raise ValueError(f"fused activation {code} is not supported")
    return names[code]


class TFLiteGraph(torch.nn.Module):
    """The graph's constants as buffers and its ops as steps; `forward` takes and returns NCHW."""

    def __init__(self, data: bytes, *, drop_final_sigmoid: bool = False) -> None:
        super().__init__()
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() != 1:
            raise ValueError("only single-subgraph models are supported")
        graph = model.Subgraphs(0)
        names = _opcode_names(model)
        self.input_index = int(graph.InputsAsNumpy()[0])
        self.output_index = int(graph.OutputsAsNumpy()[0])
        self.input_shape = tuple(int(d) for d in graph.Tensors(self.input_index).ShapeAsNumpy())  # NHWC
        self._consts: dict[int, str] = {}
        self.steps: list[Step] = []
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            buffer = model.Buffers(tensor.Buffer())
            if buffer is not None and buffer.DataLength() > 0:
                dtype = _NUMPY_TYPES[tensor.Type()]
                shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
                array = buffer.DataAsNumpy().view(dtype).reshape(shape)
                name = f"t{i}"
                self.register_buffer(name, torch.from_numpy(array.astype(np.float32 if dtype != np.int32 else np.int64)))
                self._consts[i] = name
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            kind = names[op.OpcodeIndex()]
            inputs = [int(t) for t in op.InputsAsNumpy()]
            output = int(op.OutputsAsNumpy()[0])
            self.steps.append(Step(kind, inputs, output, self._read_options(kind, op, graph)))
        if drop_final_sigmoid:
            last = next(s for s in self.steps if s.output == self.output_index)
            if last.kind != "LOGISTIC":
                raise ValueError(f"the graph output comes from {last.kind}, not a sigmoid")
            self.output_index = last.inputs[0]
        self._prepare_weights()

    @staticmethod
    def _read_options(kind: str, op: Any, graph: Any) -> dict[str, Any]:
        if kind == "CONV_2D":
            o = _options(op, tflite.Conv2DOptions)
            return {
                "padding": _SCHEMA_PADDING[o.Padding()],
                "stride": (o.StrideH(), o.StrideW()),
                "dilation": (o.DilationHFactor(), o.DilationWFactor()),
                "act": _activation(o.FusedActivationFunction()),
            }
        if kind == "DEPTHWISE_CONV_2D":
            o = _options(op, tflite.DepthwiseConv2DOptions)
            if o.DepthMultiplier() not in (0, 1):
                raise ValueError("depthwise convolutions with a depth multiplier are not supported")
            return {
                "padding": _SCHEMA_PADDING[o.Padding()],
                "stride": (o.StrideH(), o.StrideW()),
                "dilation": (o.DilationHFactor(), o.DilationWFactor()),
                "act": _activation(o.FusedActivationFunction()),
            }
        if kind == "AVERAGE_POOL_2D":
            o = _options(op, tflite.Pool2DOptions)
            return {
                "padding": _SCHEMA_PADDING[o.Padding()],
                "stride": (o.StrideH(), o.StrideW()),
                "kernel": (o.FilterHeight(), o.FilterWidth()),
                "act": _activation(o.FusedActivationFunction()),
            }
        if kind in ("ADD", "MUL"):
            cls = tflite.AddOptions if kind == "ADD" else tflite.MulOptions
            return {"act": _activation(_options(op, cls).FusedActivationFunction())}
        if kind == "RESIZE_BILINEAR":
            o = _options(op, tflite.ResizeBilinearOptions)
            if o.AlignCorners() == o.HalfPixelCenters():
                raise ValueError("bilinear resize without half-pixel centers is not supported")
            out = graph.Tensors(int(op.OutputsAsNumpy()[0])).ShapeAsNumpy()
            return {"size": (int(out[1]), int(out[2])), "align_corners": bool(o.AlignCorners())}
        if kind == "Convolution2DTransposeBias":
            # MediaPipe's raw TfLiteTransposeConvParams: padding, stride_width, stride_height (int32 each)
            padding, stride_w, stride_h = struct.unpack("<3i", op.CustomOptionsAsNumpy().tobytes()[:12])
            out = graph.Tensors(int(op.OutputsAsNumpy()[0])).ShapeAsNumpy()
            return {"padding": _CUSTOM_PADDING[padding], "stride": (stride_h, stride_w), "size": (int(out[1]), int(out[2]))}
        if kind in ("DEQUANTIZE", "HARD_SWISH", "RELU", "LOGISTIC"):
            return {}
        raise ValueError(f"TFLite op {kind} is not supported by this converter")

    def _prepare_weights(self) -> None:
        """Filters to torch layouts once, so the traced graph holds no transposes of constants."""
        for step in self.steps:
            if step.kind == "DEQUANTIZE":  # float16 constants: already widened to float32 above
                self._consts[step.output] = self._consts[step.inputs[0]]
        for step in self.steps:
            if step.kind == "CONV_2D":  # [out, kh, kw, in] -> [out, in, kh, kw]
                self._relayout(step.inputs[1], (0, 3, 1, 2))
            elif step.kind in ("DEPTHWISE_CONV_2D", "Convolution2DTransposeBias"):
                # depthwise [1, kh, kw, ch] -> [ch, 1, kh, kw]; transposed [out, kh, kw, in] -> [in, out, kh, kw]
                self._relayout(step.inputs[1], (3, 0, 1, 2))
            elif step.kind in ("ADD", "MUL"):
                for index in step.inputs:  # constant operands are NHWC-broadcast: make them NCHW
                    if index in self._consts and getattr(self, self._consts[index]).dim() == 4:
                        self._relayout(index, (0, 3, 1, 2))

    def _relayout(self, index: int, order: tuple[int, ...]) -> None:
        name = self._consts[index]
        setattr(self, name, getattr(self, name).permute(*order).contiguous())

    def _value(self, values: dict[int, torch.Tensor], index: int) -> torch.Tensor:
        if index in values:
            return values[index]
        return getattr(self, self._consts[index])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {self.input_index: image}
        for step in self.steps:
            if step.kind == "DEQUANTIZE":
                continue
            values[step.output] = self._run(step, values)
        return values[self.output_index]

    def _run(self, step: Step, values: dict[int, torch.Tensor]) -> torch.Tensor:
        x = self._value(values, step.inputs[0])
        o = step.options
        if step.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            weight = self._value(values, step.inputs[1])
            bias = self._value(values, step.inputs[2]) if len(step.inputs) > 2 and step.inputs[2] >= 0 else None
            groups = x.shape[1] if step.kind == "DEPTHWISE_CONV_2D" else 1
            x = _pad_same(x, weight.shape[2:], o["stride"], o["dilation"]) if o["padding"] == "SAME" else x
            return _act(F.conv2d(x, weight, bias, o["stride"], 0, o["dilation"], groups), o["act"])
        if step.kind == "Convolution2DTransposeBias":
            weight = self._value(values, step.inputs[1])
            bias = self._value(values, step.inputs[2])
            out = F.conv_transpose2d(x, weight, bias, o["stride"])
            return _crop_to(out, o["size"])
        if step.kind == "AVERAGE_POOL_2D":
            if o["padding"] == "SAME" and any(x.shape[2 + i] % o["stride"][i] for i in range(2)):
                raise ValueError("average pooling with SAME padding that pads is not supported")
            return _act(F.avg_pool2d(x, o["kernel"], o["stride"]), o["act"])
        if step.kind == "ADD":
            return _act(x + self._value(values, step.inputs[1]), o["act"])
        if step.kind == "MUL":
            return _act(x * self._value(values, step.inputs[1]), o["act"])
        if step.kind == "RESIZE_BILINEAR":
            return F.interpolate(x, size=o["size"], mode="bilinear", align_corners=o["align_corners"])
        if step.kind == "HARD_SWISH":
            return F.hardswish(x)
        if step.kind == "RELU":
            return F.relu(x)
        if step.kind == "LOGISTIC":
            return torch.sigmoid(x)
        raise AssertionError(step.kind)


def _pad_same(x: torch.Tensor, kernel: Any, stride: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """TensorFlow's SAME padding: the extra pixel of an odd total goes after (bottom, right)."""
    pads: list[int] = []
    for axis in (1, 0):  # F.pad takes the last dimension first
        size, k, s, d = int(x.shape[2 + axis]), int(kernel[axis]), stride[axis], dilation[axis]
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


def _crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A transposed convolution with SAME padding: keep the centre `size` of the full output."""
    if (x.shape[2], x.shape[3]) == size:
        return x
    top = (x.shape[2] - size[0]) // 2
    left = (x.shape[3] - size[1]) // 2
    return x[:, :, top : top + size[0], left : left + size[1]]


def _act(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "relu6":
        return F.relu6(x)
    return x
