"""Uploaded weights are recognised, loaded and probed before registration; refusals say why."""

from __future__ import annotations

import io

import pytest
import torch

from maskline.contracts.model_v1 import ModelOutput
from maskline.models import person
from maskline.services.weights.modelcheck import check_model
from maskline.shared.errors import PermanentError

pytestmark = pytest.mark.unit
LOGITS = ModelOutput()


class TwoHeads(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = torch.cat([image[:, :1], -image[:, :1]], dim=1)
        return {"out": scores, "aux": scores[:, :1]}


def torchscript(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def onnx_two_outputs() -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        TwoHeadsTuple(), (torch.zeros(1, 3, 16, 16),), buffer, input_names=["image"], output_names=["aux", "out"], dynamo=False
    )
    return buffer.getvalue()


class TwoHeadsTuple(torch.nn.Module):
    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.cat([image[:, :1], -image[:, :1]], dim=1)
        return scores[:, :1], scores


def test_the_bundled_onnx_model_is_recognised_and_passes() -> None:
    assert check_model(person.ONNX.read_bytes(), 2, (256, 256), LOGITS) == "onnx"


def test_the_wrong_class_count_is_refused_with_the_shapes() -> None:
    with pytest.raises(PermanentError, match=r"\(1, 2, 256, 256\); expected \(1, 3, 256, 256\)") as caught:
        check_model(person.ONNX.read_bytes(), 3, (256, 256), LOGITS)
    assert caught.value.code == "invalid_model"


def test_an_onnx_model_with_several_outputs_must_name_one() -> None:
    weights = onnx_two_outputs()
    with pytest.raises(PermanentError, match=r"outputs \['aux', 'out'\]: name the one"):
        check_model(weights, 2, (16, 16), LOGITS)
    with pytest.raises(PermanentError, match="no output 'logits'"):
        check_model(weights, 2, (16, 16), ModelOutput(name="logits"))
    assert check_model(weights, 2, (16, 16), ModelOutput(name="out")) == "onnx"


def test_a_dict_output_torchscript_model_is_taken_by_its_key() -> None:
    weights = torchscript(TwoHeads())
    with pytest.raises(PermanentError, match=r"dict with keys \['aux', 'out'\]"):
        check_model(weights, 2, (16, 16), LOGITS)
    assert check_model(weights, 2, (16, 16), ModelOutput(name="out")) == "torchscript"


def test_unsupported_formats_are_refused_naming_the_supported_ones() -> None:
    tflite = b"\x1c\x00\x00\x00TFL3" + bytes(64)
    with pytest.raises(PermanentError, match=r"TensorFlow Lite file is not supported.*TorchScript.*ONNX"):
        check_model(tflite, 2, (16, 16), LOGITS)
    with pytest.raises(PermanentError, match=r"unrecognised model file \(supported: TorchScript \(torch.jit.save\) and ONNX\)"):
        check_model(b"GIF89a....", 2, (16, 16), LOGITS)


def test_a_torch_save_file_is_refused_with_the_way_to_export_it() -> None:
    buffer = io.BytesIO()
    torch.save(TwoHeads().state_dict(), buffer)
    with pytest.raises(PermanentError, match=r"torch.save\(\)'d module or state dict is not TorchScript"):
        check_model(buffer.getvalue(), 2, (16, 16), LOGITS)


def test_a_declared_format_must_match_the_file() -> None:
    with pytest.raises(PermanentError, match="declared format torchscript, but the file is ONNX"):
        check_model(person.ONNX.read_bytes(), 2, (256, 256), LOGITS, "torchscript")
