"""The int8 path in process: real quantized kernels, rebuild from the recipe, edits, unsupported layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maskline.contracts.model_v1 import Architecture, LayerEdit
from maskline.services.quantize import architecture as arch
from maskline.services.quantize import engine
from tests.services.quantize.conftest import ALLOWED, WEIGHTS, recipe

pytestmark = pytest.mark.unit


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).float().mean())


def test_transposed_convolution_rewrite_is_exact(images: torch.Tensor) -> None:
    transposed = nn.ConvTranspose2d(8, 4, 2, stride=2).eval()
    x = torch.randn(2, 8, 9, 7)
    with torch.no_grad():
        assert torch.allclose(arch.PixelShuffleUp(transposed)(x), transposed(x), atol=1e-6)


def test_int8_runs_integer_kernels_and_agrees_with_float(
    starter: nn.Module, int8: engine.Quantized, images: torch.Tensor
) -> None:
    scripted = engine.load_torchscript(engine.to_torchscript(int8.model, images[:1]))
    code = str(scripted.inlined_graph)
    assert code.count("quantized::conv2d_relu(") == 14 and code.count("quantized::conv2d(") == 4
    assert "aten::conv2d" not in code  # no float convolution left in the INT8 version
    # int8 from end to end: the image is quantized once and the logits dequantized once
    assert code.count("aten::quantize_per_tensor") == 1 and code.count("aten::dequantize") == 1
    held_out = images[16:]
    with torch.inference_mode():
        assert agreement(starter(held_out), scripted(held_out)) > 0.99


def test_hybrid_keeps_non_convolutions_in_float(starter: nn.Module, images: torch.Tensor) -> None:
    hybrid = engine.quantize(starter, recipe(precision="hybrid"), [images[:16]], images[:1])
    code = str(engine.load_torchscript(engine.to_torchscript(hybrid.model, images[:1])).inlined_graph)
    assert code.count("quantized::conv2d_relu(") == 14
    assert code.count("aten::dequantize") > 3  # back to float between convolution blocks: concat, upsampling in float
    with torch.inference_mode():
        assert agreement(starter(images[16:]), hybrid.model(images[16:])) > 0.99


def test_keep_float_leaves_a_layer_in_float(starter: nn.Module, images: torch.Tensor) -> None:
    kept = engine.quantize(starter, recipe(keep_float=("head",)), [images[:8]], images[:1])
    assert "head" not in engine.quantized_layers(kept.model)
    assert isinstance(kept.model.get_submodule("head"), nn.Conv2d)


def test_rebuild_from_the_recipe_is_bit_identical(starter: nn.Module, int8: engine.Quantized, images: torch.Tensor) -> None:
    rebuilt = engine.rebuild(starter, int8.recipe, images[:1])
    with torch.inference_mode():
        assert torch.equal(rebuilt(images).dequantize() if rebuilt(images).is_quantized else rebuilt(images), int8.model(images))


def test_edit_replaces_weights_and_scales(starter: nn.Module, int8: engine.Quantized, images: torch.Tensor) -> None:
    layer = engine.quantized_layers(int8.model)["head"]
    count = layer.weight().numel()  # type: ignore[operator]
    edited = engine.rebuild(
        starter, engine.Recipe(**{**_fields(int8.recipe), "edits": (LayerEdit(layer="head", weights=(0,) * count),)}), images[:1]
    )
    new = engine.quantized_layers(edited)["head"]
    assert int(new.weight().int_repr().abs().sum()) == 0  # type: ignore[operator]
    scaled = engine.rebuild(
        starter, engine.Recipe(**{**_fields(int8.recipe), "edits": (LayerEdit(layer="enc1.0", output_scale=0.5),)}), images[:1]
    )
    assert engine.quantized_layers(scaled)["enc1.0"].scale == 0.5
    with torch.inference_mode():
        assert not torch.equal(scaled(images[:2]), int8.model(images[:2]))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (LayerEdit(layer="nope", weight_scale=1.0), "no int8 layer named 'nope'"),
        (LayerEdit(layer="head", weights=(1, 2, 3)), "3 weights given"),
    ],
)
def test_bad_edits_are_refused(
    starter: nn.Module, int8: engine.Quantized, images: torch.Tensor, edit: LayerEdit, message: str
) -> None:
    with pytest.raises(engine.QuantizationError, match=message):
        engine.rebuild(starter, engine.Recipe(**{**_fields(int8.recipe), "edits": (edit,)}), images[:1])


def _fields(r: engine.Recipe) -> dict[str, object]:
    return {f: getattr(r, f) for f in r.__struct_fields__}


class WithGelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.conv(x))
        return out


def test_an_unsupported_layer_is_named() -> None:
    with pytest.raises(arch.UnsupportedLayer, match=r"layer 'act' \(GELU\)"):
        arch.check_supported(WithGelu(), ())
    arch.check_supported(WithGelu(), ("act",))  # kept in float: accepted
    with pytest.raises(arch.ArchitectureError, match="unknown layers: bogus"):
        arch.check_supported(WithGelu(), ("bogus",))


def test_architectures_outside_the_allowed_packages_are_refused() -> None:
    with pytest.raises(arch.ArchitectureError, match="outside the allowed packages"):
        arch.load(Architecture(entrypoint="os:system"), WEIGHTS.read_bytes(), ALLOWED)


def test_an_empty_calibration_set_is_refused(starter: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(engine.QuantizationError, match="calibration set is empty"):
        engine.quantize(starter, recipe(), [], images[:1])
