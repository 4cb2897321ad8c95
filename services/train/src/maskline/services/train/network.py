"""The network a run trains: a registered TorchScript version (its parameters stay trainable) or a
fresh instance of an allowed architecture; which of its parameters are frozen; its class scores."""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import nn

from maskline.contracts.model_v1 import Architecture
from maskline.shared.errors import PermanentError
from maskline.shared.models import architectures


class Untrainable(PermanentError):
    code = "untrainable_model"


def from_torchscript(data: bytes) -> nn.Module:
    module: nn.Module = torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
    if not any(p.requires_grad for p in module.parameters()):
        raise Untrainable("the version has no trainable parameters (its weights are constants of the graph)")
    return module


def from_architecture(architecture: Architecture, allowed_prefixes: tuple[str, ...], seed: int) -> nn.Module:
    """A fresh instance, its initial weights drawn from `seed` (only a network class of an allowed
    package: `shared.models.architectures`)."""
    torch.manual_seed(seed)
    try:
        return architectures.build(architecture, allowed_prefixes)
    except architectures.ArchitectureRefused as exc:
        raise Untrainable(str(exc)) from exc


def freeze(module: nn.Module, prefixes: tuple[str, ...]) -> int:
    """Stop training the parameters under `prefixes`; how many tensors were frozen. A prefix that
    names nothing is a mistake worth refusing (a typo would train everything)."""
    frozen = 0
    for prefix in prefixes:
        matched = [p for name, p in module.named_parameters() if name.startswith(prefix)]
        if not matched:
            raise PermanentError(f"no parameter name starts with {prefix!r} (freeze)", code="invalid_request")
        for parameter in matched:
            parameter.requires_grad_(False)
            frozen += 1
    return frozen


def train_mode(module: nn.Module, frozen: tuple[str, ...]) -> None:
    """Training mode, except frozen layers: their BatchNorm statistics must not move either."""
    module.train()
    for name, child in module.named_modules():
        if name and any(name.startswith(p.rstrip(".")) for p in frozen):
            child.eval()


def scores(out: Any, name: str | None) -> torch.Tensor:
    """The class-scores tensor of a network's return value (a tensor, a dict by `name`, a tuple's first)."""
    if isinstance(out, dict):
        out = out[name] if name is not None else next(iter(out.values()))
    elif isinstance(out, tuple | list):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise Untrainable(f"the network returns {type(out).__name__}, not a tensor of class scores")
    return out


def torchscript(module: nn.Module) -> bytes:
    """The trained network as TorchScript, in inference mode (what serving loads)."""
    module = module.cpu().eval()
    scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    return buffer.getvalue()
