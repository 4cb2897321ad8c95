"""From a registered float version to a Python module quantization can trace.

TorchScript cannot be traced by torch.fx, so a quantizable version names its architecture (a class
in an allowed package); its weights are loaded into a fresh instance. Then two rewrites run:
transposed convolutions with kernel == stride become a 1x1 convolution plus pixel shuffle (exactly
the same function; torch 2.13's quantized ConvTranspose2d gives wrong results — measured in
docs/decisions/0004), and every layer type is checked against what the int8 path supports.
"""

from __future__ import annotations

import io

import torch
from torch import nn

from maskline.contracts.model_v1 import Architecture
from maskline.shared.models import architectures

#: Leaf layer types the int8 path handles (anything else must be listed in keep_float).
SUPPORTED: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.PixelShuffle,
    nn.Upsample,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
)


class ArchitectureError(ValueError):
    """The version cannot be turned into a quantizable module."""


class UnsupportedLayer(ArchitectureError):
    pass


class PixelShuffleUp(nn.Module):
    """ConvTranspose2d(kernel=stride=k, padding=0) as Conv2d(1x1, out*k*k) + PixelShuffle(k): equal outputs."""

    def __init__(self, transposed: nn.ConvTranspose2d) -> None:
        super().__init__()
        cin, cout, k, _ = transposed.weight.shape
        self.conv = nn.Conv2d(cin, cout * k * k, 1, bias=transposed.bias is not None)
        self.factor = int(k)
        with torch.no_grad():
            self.conv.weight.copy_(transposed.weight.permute(1, 2, 3, 0).reshape(cout * k * k, cin, 1, 1))
            if transposed.bias is not None and self.conv.bias is not None:
                self.conv.bias.copy_(transposed.bias.repeat_interleave(k * k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The pixel shuffle written as reshape/permute that yields a channels-last tensor: int8
        # convolutions keep NHWC tensors, and torch's quantized pixel_shuffle/cat copy them back
        # to NCHW first (38% of INT8 time profiled); this halves the INT8 latency (10.7 → 5.3 ms).
        y = self.conv(x)
        n, c, h, w = y.shape
        r = self.factor
        t = y.permute(0, 2, 3, 1).reshape(n, h, w, c // (r * r), r, r).permute(0, 1, 4, 2, 5, 3)
        out: torch.Tensor = t.reshape(n, h * r, w * r, c // (r * r)).permute(0, 3, 1, 2)
        return out


def _rewritable(m: nn.ConvTranspose2d) -> bool:
    k = m.kernel_size
    return (
        k[0] == k[1] == m.stride[0] == m.stride[1]
        and m.padding == (0, 0)
        and m.output_padding == (0, 0)
        and m.groups == 1
        and m.dilation == (1, 1)
    )


def load(architecture: Architecture, torchscript: bytes, allowed_prefixes: tuple[str, ...]) -> nn.Module:
    """Instantiate the architecture and load the version's weights into it (strictly)."""
    try:
        model = architectures.build(architecture, allowed_prefixes)
    except architectures.ArchitectureRefused as exc:
        raise ArchitectureError(str(exc)) from exc
    scripted = torch.jit.load(io.BytesIO(torchscript), map_location="cpu")  # type: ignore[no-untyped-call]
    try:
        model.load_state_dict(scripted.state_dict())
    except RuntimeError as exc:
        raise ArchitectureError(f"weights do not fit {architecture.entrypoint}: {str(exc).splitlines()[0]}") from exc
    return model.eval()


def rewrite_upsampling(model: nn.Module) -> nn.Module:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.ConvTranspose2d) and _rewritable(child):
            setattr(model, name, PixelShuffleUp(child))
        else:
            rewrite_upsampling(child)
    return model


def check_supported(model: nn.Module, keep_float: tuple[str, ...]) -> None:
    """Fail, naming the first layer, when a leaf layer has no int8 path and is not kept in float."""
    names = dict(model.named_modules())
    unknown = [n for n in keep_float if n not in names]
    if unknown:
        raise ArchitectureError(f"keep_float names unknown layers: {', '.join(unknown)}")
    for name, module in model.named_modules():
        if list(module.children()) or isinstance(module, SUPPORTED):
            continue
        if any(name == k or name.startswith(k + ".") for k in keep_float):
            continue
        detail = f"{type(module).__name__}"
        if isinstance(module, nn.ConvTranspose2d):
            detail += f"(kernel {module.kernel_size}, stride {module.stride}, padding {module.padding})"
        raise UnsupportedLayer(f"layer {name!r} ({detail}) has no int8 implementation here; list it in keep_float")
