"""Model registry contracts, major version 1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from maskline.contracts.common_v1 import ObjectRef

REGISTERED = "model.v1.registered"
FAILED = "model.v1.failed"

ModelName = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9_-]{0,63}$")]


class ModelVersion(msgspec.Struct, frozen=True, kw_only=True):
    """One servable version of a model: TorchScript weights plus what a caller must know."""

    name: ModelName
    version: Annotated[int, msgspec.Meta(ge=1)]
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    """(height, width) the network is fed; infer resizes to it and merge resizes back."""
    weights: ObjectRef
    precision: str = "fp32"
    parent: str | None = None
    """`name/version` this one was derived from (quantization, merge), if any."""
    created: datetime | None = None
    metrics: dict[str, float] = {}
    description: str = ""


class ModelRegistered(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelVersion


#: Payload type of every subject in this family.
PAYLOADS: dict[str, type[msgspec.Struct]] = {REGISTERED: ModelRegistered}
