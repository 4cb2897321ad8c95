"""Check uploaded TorchScript weights really are a segmentation model before they are registered."""

from __future__ import annotations

import io

import torch

from maskline.shared.errors import PermanentError


def check_torchscript(weights: bytes, classes: int, input_size: tuple[int, int]) -> None:
    """Load the file and run one zero image through it; the output must be 1 x classes x H x W."""
    try:
        model = torch.jit.load(io.BytesIO(weights), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise PermanentError(f"not a loadable TorchScript file: {exc}", code="invalid_model") from exc
    height, width = input_size
    try:
        with torch.inference_mode():
            out = model(torch.zeros(1, 3, height, width))
    except Exception as exc:
        raise PermanentError(f"model failed on a 1x3x{height}x{width} input: {exc}", code="invalid_model") from exc
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, classes, height, width):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PermanentError(
            f"model output is {shape}; expected (1, {classes}, {height}, {width}) class scores", code="invalid_model"
        )
