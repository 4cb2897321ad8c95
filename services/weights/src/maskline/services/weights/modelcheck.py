"""Check uploaded weights really are a segmentation model before they are registered.

Two formats: TorchScript (a zip written by `torch.jit.save`) and ONNX (a protobuf, run with ONNX
Runtime). The file is recognised by its first bytes, loaded, and one zero image of the declared
input size is run through it; the declared output must hold 1 x classes x H x W scores. Anything
else is refused with a message that says what it is (when it is recognisable) and what is accepted.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import onnxruntime
import torch

from maskline.contracts.model_v1 import FORMATS, ModelFormat, ModelOutput
from maskline.shared.errors import PermanentError

#: One file's formats (a SAM-format version is two ONNX files: sam_check.py).
SUPPORTED = " and ".join(FORMATS[f] for f in ("torchscript", "onnx"))


def invalid(message: str) -> PermanentError:
    return PermanentError(message, code="invalid_model")


def recognise(weights: bytes) -> ModelFormat:
    """The format by its magic bytes, or a refusal that names the supported ones."""
    if weights[:4] == b"PK\x03\x04":
        return "torchscript"
    if weights[:1] == b"\x08":  # ONNX ModelProto starts with field 1 (ir_version, a varint)
        return "onnx"
    if weights[4:8] == b"TFL3":
        raise invalid(f"a TensorFlow Lite file is not supported: convert it (supported: {SUPPORTED})")
    if weights[:8] == b"\x89HDF\r\n\x1a\n":
        raise invalid(f"a Keras/HDF5 file is not supported: export it to ONNX (supported: {SUPPORTED})")
    raise invalid(f"unrecognised model file (supported: {SUPPORTED})")


def check_model(
    weights: bytes, classes: int, input_size: tuple[int, int], output: ModelOutput, declared: ModelFormat | None = None
) -> ModelFormat:
    """The file's format, once it loads and gives class scores of the right shape at `output`."""
    found = recognise(weights)
    if declared is not None and declared != found:
        raise invalid(f"declared format {declared}, but the file is {FORMATS[found]}")
    probe = np.zeros((1, 3, *input_size), dtype=np.float32)
    scores = _run_onnx(weights, probe, output) if found == "onnx" else _run_torchscript(weights, probe, output)
    height, width = input_size
    if scores.ndim != 4 or tuple(scores.shape) != (1, classes, height, width):
        raise invalid(f"model output is {tuple(scores.shape)}; expected (1, {classes}, {height}, {width}) class scores")
    return found


def _run_torchscript(weights: bytes, probe: np.ndarray[Any, Any], output: ModelOutput) -> np.ndarray[Any, Any]:
    try:
        model = torch.jit.load(io.BytesIO(weights), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    except Exception as exc:
        hint = " (a torch.save()'d module or state dict is not TorchScript: use torch.jit.script or trace, then torch.jit.save)"
        raise invalid(f"not a loadable TorchScript file: {exc}{hint}") from exc
    try:
        with torch.inference_mode():
            out = model(torch.from_numpy(probe))
    except Exception as exc:
        raise invalid(f"model failed on a {'x'.join(map(str, probe.shape))} input: {exc}") from exc
    return np.asarray(pick_torch_output(out, output.name).float().numpy())


def pick_torch_output(out: Any, name: str | None) -> torch.Tensor:
    """The scores tensor from a model's return value: a tensor, a dict (by `name`), a tuple (the first)."""
    if isinstance(out, dict):
        if name is None and len(out) != 1:
            raise invalid(f"the model returns a dict with keys {sorted(out)}: name the one with the class scores (output)")
        key = name if name is not None else next(iter(out))
        if key not in out:
            raise invalid(f"the model returns a dict without {key!r} (keys: {sorted(out)})")
        out = out[key]
    elif isinstance(out, tuple | list):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise invalid(f"the model returns {type(out).__name__}, not a tensor of class scores")
    return out


def _run_onnx(weights: bytes, probe: np.ndarray[Any, Any], output: ModelOutput) -> np.ndarray[Any, Any]:
    try:
        session = onnxruntime.InferenceSession(weights, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise invalid(f"not a loadable ONNX model: {exc}") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise invalid(f"the model takes {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); it must take one image")
    if inputs[0].type != "tensor(float)":
        raise invalid(f"the model's input is {inputs[0].type}; it must be tensor(float) (N x 3 x H x W)")
    names = [o.name for o in session.get_outputs()]
    if output.name is None and len(names) > 1:
        raise invalid(f"the model has outputs {names}: name the one with the class scores (output)")
    if output.name is not None and output.name not in names:
        raise invalid(f"the model has no output {output.name!r} (outputs: {names})")
    try:
        result = session.run([output.name or names[0]], {inputs[0].name: probe})[0]
    except Exception as exc:
        raise invalid(f"model failed on a {'x'.join(map(str, probe.shape))} input: {exc}") from exc
    return np.asarray(result)
