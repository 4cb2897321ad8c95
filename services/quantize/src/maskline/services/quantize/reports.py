"""What quantization did, layer by layer: STEP (side by side) and CROSS (one layer swapped).

Both compare the int8 network with the float network fused the same way (BatchNorm folded), so
layer names match: `enc1.0` is the same convolution + BN + ReLU in both.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
import torch
from torch import nn
from torch.fx import GraphModule

from maskline.services.quantize.engine import quantized_layers

HISTOGRAM_BINS = 32


class Histogram(msgspec.Struct, frozen=True):
    edges: list[float]
    counts: list[int]


class TensorStats(msgspec.Struct, frozen=True):
    min: float
    max: float
    histogram: Histogram


class Error(msgspec.Struct, frozen=True):
    sqnr_db: float
    cosine: float
    l2_normalized: float
    max_abs: float


class StepLayer(msgspec.Struct, frozen=True, kw_only=True):
    layer: str
    type: str
    error: Error
    """Float output vs int8 output (dequantized), each network fed its own upstream."""
    weight_float: TensorStats
    weight_int8: TensorStats
    """Histogram of the int8 weight integers."""
    weight_scale: list[float]
    weight_zero_point: list[int]
    activation_float: TensorStats
    activation_int8: TensorStats
    output_scale: float
    output_zero_point: int
    input_scale: float | None
    input_zero_point: int | None


class StepReport(msgspec.Struct, frozen=True, kw_only=True):
    images: int
    layers: list[StepLayer]
    output: Error
    pixel_agreement: float
    """Share of pixels whose class (argmax) is the same in float and int8."""


class CrossLayer(msgspec.Struct, frozen=True, kw_only=True):
    layer: str
    only_this_int8: Error
    """Float network with just this layer in int8: the final output vs float."""
    only_this_int8_agreement: float
    all_but_this_int8: Error
    """Int8 network with just this layer in float: the final output vs float."""
    all_but_this_int8_agreement: float


class CrossReport(msgspec.Struct, frozen=True, kw_only=True):
    images: int
    int8_output: Error
    layers: list[CrossLayer]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 999.0  # JSON has no infinity: 999 dB means exact


def error(reference: torch.Tensor, other: torch.Tensor) -> Error:
    a, b = reference.detach().double().reshape(-1), other.detach().double().reshape(-1)
    noise = float(torch.sum((a - b) ** 2))
    signal = float(torch.sum(a**2))
    sqnr = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else math.inf
    denominator = float(a.norm() * b.norm())
    cosine = float(torch.dot(a, b)) / denominator if denominator > 0 else 1.0
    return Error(
        sqnr_db=round(_finite(sqnr), 3),
        cosine=round(cosine, 6),
        l2_normalized=round(float((a - b).norm()) / max(float(a.norm()), 1e-12), 6),
        max_abs=round(float((a - b).abs().max()), 6),
    )


def stats(t: torch.Tensor) -> TensorStats:
    values = t.detach().float().reshape(-1).numpy()
    lo, hi = float(values.min()), float(values.max())
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(lo, hi if hi > lo else lo + 1))
    return TensorStats(min=lo, max=hi, histogram=Histogram(edges=[round(float(e), 6) for e in edges], counts=counts.tolist()))


def plain(t: Any) -> torch.Tensor:
    return t.dequantize() if isinstance(t, torch.Tensor) and t.is_quantized else t


def _record(model: nn.Module, names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[Any]]:
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = []
    for name in names:
        module = modules[name]
        handles.append(module.register_forward_pre_hook(lambda _m, i, n=name: inputs.__setitem__(n, i[0])))
        handles.append(module.register_forward_hook(lambda _m, _i, o, n=name: outputs.__setitem__(n, o)))
    return inputs, outputs, handles


def _float_weight(module: nn.Module) -> torch.Tensor:
    conv = module[0] if isinstance(module, nn.Sequential) else module
    return conv.weight  # type: ignore[return-value]


def step(fused: GraphModule, int8: GraphModule, images: torch.Tensor) -> StepReport:
    layers = quantized_layers(int8)
    names = list(layers)
    _, float_out, fh = _record(fused, names)
    int8_in, int8_out, qh = _record(int8, names)
    with torch.inference_mode():
        reference = fused(images)
        quantized = int8(images)
    for h in (*fh, *qh):
        h.remove()
    rows = []
    fused_modules = dict(fused.named_modules())
    for name in names:
        layer = layers[name]
        weight = layer.weight()  # type: ignore[operator]
        per_channel = weight.qscheme() in (torch.per_channel_symmetric, torch.per_channel_affine)
        scales = weight.q_per_channel_scales().tolist() if per_channel else [weight.q_scale()]
        zeros = weight.q_per_channel_zero_points().tolist() if per_channel else [weight.q_zero_point()]
        q_in = int8_in.get(name)
        quantized_input = isinstance(q_in, torch.Tensor) and q_in.is_quantized
        rows.append(
            StepLayer(
                layer=name,
                type=type(layer).__name__,
                error=error(plain(float_out[name]), plain(int8_out[name])),
                weight_float=stats(_float_weight(fused_modules[name])),
                weight_int8=stats(weight.int_repr()),
                weight_scale=[float(s) for s in scales],
                weight_zero_point=[int(z) for z in zeros],
                activation_float=stats(plain(float_out[name])),
                activation_int8=stats(plain(int8_out[name])),
                output_scale=float(layer.scale),  # type: ignore[arg-type]
                output_zero_point=int(layer.zero_point),  # type: ignore[arg-type]
                input_scale=float(q_in.q_scale()) if quantized_input else None,  # type: ignore[union-attr]
                input_zero_point=int(q_in.q_zero_point()) if quantized_input else None,  # type: ignore[union-attr]
            )
        )
    return StepReport(
        images=int(images.shape[0]),
        layers=rows,
        output=error(reference, plain(quantized)),
        pixel_agreement=agreement(reference, plain(quantized)),
    )


def agreement(reference: torch.Tensor, other: torch.Tensor) -> float:
    return round(float((reference.argmax(1) == other.argmax(1)).float().mean()), 6)


class _FloatIsland(nn.Module):
    """One float layer inside the int8 network: dequantize, run float, requantize as int8 would."""

    def __init__(self, layer: nn.Module, scale: float, zero_point: int) -> None:
        super().__init__()
        self.layer, self.scale, self.zero_point = layer, scale, zero_point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.quantize_per_tensor(self.layer(x.dequantize()), self.scale, self.zero_point, torch.quint8)


class _Int8Island(nn.Module):
    """One int8 layer inside the float network: quantize with the int8 network's input qparams."""

    def __init__(self, layer: nn.Module, scale: float, zero_point: int) -> None:
        super().__init__()
        self.layer, self.scale, self.zero_point = layer, scale, zero_point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(torch.quantize_per_tensor(x, self.scale, self.zero_point, torch.quint8)).dequantize()  # type: ignore[no-any-return]


def _swap(model: nn.Module, name: str, replacement: nn.Module) -> nn.Module:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, attr)
    setattr(parent, attr, replacement)
    return original  # type: ignore[no-any-return]


def cross(fused: GraphModule, int8: GraphModule, images: torch.Tensor, only: str | None = None) -> CrossReport:
    layers = quantized_layers(int8)
    names = [only] if only else list(layers)
    for name in names:
        if name not in layers:
            raise ValueError(f"no int8 layer named {name!r}")
    int8_in, _, handles = _record(int8, names)
    with torch.inference_mode():
        reference = fused(images)
        full = plain(int8(images))
    for h in handles:
        h.remove()
    fused_modules = dict(fused.named_modules())
    rows = []
    for name in names:
        layer = layers[name]
        q_in = int8_in[name]
        island = _Int8Island(layer, float(q_in.q_scale()), int(q_in.q_zero_point()))
        original = _swap(fused, name, island)
        try:
            with torch.inference_mode():
                one_int8 = fused(images)
        finally:
            _swap(fused, name, original)
        float_island = _FloatIsland(fused_modules[name], float(layer.scale), int(layer.zero_point))  # type: ignore[arg-type]
        original = _swap(int8, name, float_island)
        try:
            with torch.inference_mode():
                one_float = plain(int8(images))
        finally:
            _swap(int8, name, original)
        rows.append(
            CrossLayer(
                layer=name,
                only_this_int8=error(reference, one_int8),
                only_this_int8_agreement=agreement(reference, one_int8),
                all_but_this_int8=error(reference, one_float),
                all_but_this_int8_agreement=agreement(reference, one_float),
            )
        )
    return CrossReport(images=int(images.shape[0]), int8_output=error(reference, full), layers=rows)
