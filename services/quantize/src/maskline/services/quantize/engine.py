"""Post-training quantization with torch.ao's FX flow and our calibrators; real int8 kernels (x86).

`quantize` calibrates and converts; the result carries a `Recipe` (every observer's scale and zero
point, plus layer edits) from which `rebuild` makes the same network again from the float parent.
That is what makes weight editing possible on a version whose servable form is TorchScript.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import torch
from torch import nn
from torch.ao.quantization import QConfig, QConfigMapping
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
from torch.ao.quantization.quantize_fx import convert_fx, fuse_fx, prepare_fx
from torch.fx import GraphModule

from maskline.contracts.model_v1 import CalibrationMethod, LayerEdit
from maskline.services.quantize.observer import CalibrationObserver

ENGINE = "x86"
QuantPrecision = Literal["hybrid", "int8"]
#: Layer types that run in int8 in HYBRID mode: convolutions with their fused BatchNorm and ReLU.
HYBRID_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)

warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*")


class QuantizationError(ValueError):
    """The request cannot be carried out on this model (bad layer name, an edit that does not fit...)."""


class Recipe(msgspec.Struct, frozen=True, kw_only=True):
    method: CalibrationMethod
    precision: QuantPrecision
    per_channel: bool
    keep_float: tuple[str, ...]
    percentile: float
    observers: dict[str, tuple[float, int]]
    """FX observer name → (scale, zero point) chosen at calibration."""
    edits: tuple[LayerEdit, ...] = ()


@dataclass(frozen=True)
class Quantized:
    model: GraphModule
    recipe: Recipe


def _qconfig(method: CalibrationMethod, per_channel: bool, percentile: float) -> QConfig:
    activation = CalibrationObserver.with_args(method=method, percentile=percentile)
    if per_channel:
        weight = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    else:
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return QConfig(activation=activation, weight=weight)  # type: ignore[no-untyped-call]


def qconfig_mapping(recipe: Recipe) -> QConfigMapping:
    main = _qconfig(recipe.method, recipe.per_channel, recipe.percentile)
    mapping = QConfigMapping()
    if recipe.precision == "int8":
        mapping.set_global(main)
    else:
        for layer_type in HYBRID_TYPES:
            mapping.set_object_type(layer_type, main)
    for name in recipe.keep_float:
        mapping.set_module_name(name, None)
    return mapping


def observers(prepared: GraphModule) -> dict[str, CalibrationObserver]:
    return {n: m for n, m in prepared.named_modules() if isinstance(m, CalibrationObserver)}


def _prepare(model: nn.Module, recipe: Recipe, example: torch.Tensor) -> GraphModule:
    torch.backends.quantized.engine = ENGINE
    return prepare_fx(copy.deepcopy(model).eval(), qconfig_mapping(recipe), (example,))


def quantize(
    model: nn.Module,
    recipe: Recipe,
    batches: Iterable[torch.Tensor],
    example: torch.Tensor,
    progress: Callable[[int], None] | None = None,
) -> Quantized:
    """Calibrate `model` on `batches` (N x 3 x H x W float) and convert it to int8 kernels."""
    prepared = _prepare(model, recipe, example)
    seen = 0
    with torch.inference_mode():
        for batch in batches:
            prepared(batch)
            seen += int(batch.shape[0])
            if progress:
                progress(seen)
    if seen == 0:
        raise QuantizationError("the calibration set is empty")
    chosen = {name: obs.chosen() for name, obs in observers(prepared).items()}
    recipe = msgspec.structs.replace(recipe, observers=chosen)
    return Quantized(model=_convert(prepared, recipe), recipe=recipe)


def rebuild(model: nn.Module, recipe: Recipe, example: torch.Tensor) -> GraphModule:
    """The same int8 network again, from the float model and the recipe (no calibration data)."""
    prepared = _prepare(model, recipe, example)
    found = observers(prepared)
    if set(found) != set(recipe.observers):
        raise QuantizationError("the recipe does not match this model's quantization graph")
    for name, obs in found.items():
        scale, zero_point = recipe.observers[name]
        obs.fixed = (float(scale), int(zero_point))
    return _convert(prepared, recipe)


def _convert(prepared: GraphModule, recipe: Recipe) -> GraphModule:
    converted = convert_fx(prepared)
    for edit in recipe.edits:
        apply_edit(converted, edit)
    return converted


def quantized_layers(model: GraphModule) -> dict[str, nn.Module]:
    """Layers holding int8 weights (quantized convolutions, linear layers), by name."""
    return {n: m for n, m in model.named_modules() if hasattr(m, "weight") and callable(m.weight) and hasattr(m, "scale")}


def apply_edit(model: GraphModule, edit: LayerEdit) -> None:
    layers = quantized_layers(model)
    layer = layers.get(edit.layer)
    if layer is None:
        raise QuantizationError(f"no int8 layer named {edit.layer!r}; int8 layers: {', '.join(sorted(layers))}")
    weight: torch.Tensor = layer.weight()  # type: ignore[operator]
    ints = weight.int_repr()
    if edit.weights is not None:
        if len(edit.weights) != ints.numel():
            raise QuantizationError(
                f"{edit.layer}: {len(edit.weights)} weights given, the layer has {ints.numel()} {tuple(ints.shape)}"
            )
        if min(edit.weights) < -128 or max(edit.weights) > 127:
            raise QuantizationError(f"{edit.layer}: int8 weights must lie in [-128, 127]")
        ints = torch.tensor(edit.weights, dtype=torch.int8).reshape(ints.shape)
    if weight.qscheme() in (torch.per_channel_symmetric, torch.per_channel_affine):
        scales = weight.q_per_channel_scales().double()
        if edit.weight_scale is not None:
            scales = torch.full_like(scales, edit.weight_scale)
        new = torch._make_per_channel_quantized_tensor(
            ints, scales, weight.q_per_channel_zero_points(), weight.q_per_channel_axis()
        )
    else:
        scale = edit.weight_scale if edit.weight_scale is not None else weight.q_scale()
        new = torch._make_per_tensor_quantized_tensor(ints, scale, weight.q_zero_point())
    layer.set_weight_bias(new, layer.bias())  # type: ignore[operator]
    if edit.output_scale is not None:
        setattr(layer, "scale", float(edit.output_scale))  # noqa: B010 (a plain float attribute of quantized layers)
    if edit.output_zero_point is not None:
        setattr(layer, "zero_point", int(edit.output_zero_point))  # noqa: B010


def fused_float(model: nn.Module) -> GraphModule:
    """The float model with BatchNorm folded and layers fused as the int8 one: same layer names."""
    return fuse_fx(copy.deepcopy(model).eval())


def to_torchscript(model: nn.Module, example: torch.Tensor) -> bytes:
    """Traced TorchScript (scripting an FX graph module fails on its generated annotations).

    The network is shape-agnostic (convolutions, pooling, concatenation), so tracing one size is
    enough; the Triton backend loads it like any other version."""
    torch.backends.quantized.engine = ENGINE
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(model, (example,), check_trace=False)  # type: ignore[no-untyped-call]
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    return buffer.getvalue()


def load_torchscript(data: bytes) -> Any:
    torch.backends.quantized.engine = ENGINE
    return torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
