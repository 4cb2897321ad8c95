"""Shared fixtures: the starter model rebuilt for quantization, images, one INT8 version."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from maskline.contracts.model_v1 import Architecture
from maskline.models.starter import WEIGHTS, shapes
from maskline.services.quantize import architecture as arch
from maskline.services.quantize import engine

STARTER = Architecture(entrypoint="maskline.models.starter.unet:UNet", kwargs={"classes": 4, "width": 16})
ALLOWED = ("maskline.models.",)


def recipe(**overrides: object) -> engine.Recipe:
    fields: dict[str, object] = {
        "method": "percentile",
        "precision": "int8",
        "per_channel": True,
        "keep_float": (),
        "percentile": 99.99,
        "observers": {},
    }
    return engine.Recipe(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def starter() -> nn.Module:
    return arch.rewrite_upsampling(arch.load(STARTER, WEIGHTS.read_bytes(), ALLOWED))


@pytest.fixture(scope="session")
def images() -> torch.Tensor:
    pixels, _ = shapes.batch(np.random.default_rng(11), 24)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="session")
def int8(starter: nn.Module, images: torch.Tensor) -> engine.Quantized:
    return engine.quantize(starter, recipe(), [images[:8], images[8:16]], images[:1])
