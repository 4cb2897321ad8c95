"""The network class a version's `Architecture` names, for the services that rebuild networks
(quantize, train). Importing an entrypoint runs code, so this is the one gate: only modules under
the allowed packages, never a `__main__`, and only a torch module class comes back (never another
callable, which could do anything when called)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from maskline.contracts.model_v1 import Architecture

if TYPE_CHECKING:
    from torch import nn


class ArchitectureRefused(ValueError):
    """The entrypoint is outside the allowed packages, cannot be imported, or is not a network class."""


def network_class(architecture: Architecture, allowed_prefixes: tuple[str, ...]) -> type[nn.Module]:
    from torch import nn  # only the services that rebuild networks carry torch

    module_name, _, class_name = architecture.entrypoint.partition(":")
    allowed = any(module_name == p.rstrip(".") or module_name.startswith(p) for p in allowed_prefixes)
    if not allowed or module_name.rsplit(".", 1)[-1] == "__main__":
        raise ArchitectureRefused(f"architecture {architecture.entrypoint!r} is outside the allowed packages {allowed_prefixes}")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ArchitectureRefused(f"cannot build {architecture.entrypoint}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise ArchitectureRefused(f"{architecture.entrypoint} is not a torch module class")
    return found


def build(architecture: Architecture, allowed_prefixes: tuple[str, ...]) -> nn.Module:
    """A fresh instance (its constructor's failure, even an exit, refused rather than raised)."""
    cls = network_class(architecture, allowed_prefixes)
    try:
        return cls(**architecture.kwargs)
    except (Exception, SystemExit) as exc:  # a constructor that exits must not take the worker with it
        raise ArchitectureRefused(f"cannot build {architecture.entrypoint}: {exc}") from exc
