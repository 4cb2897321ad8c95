"""Model registry contracts, major version 1."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from maskline.contracts.common_v1 import ObjectRef

REGISTERED = "model.v1.registered"
MERGE_REQUESTED = "model.v1.merge.requested"
MERGED = "model.v1.merged"
ROUND_OPENED = "model.v1.round.opened"
UPDATE_SUBMITTED = "model.v1.round.update.submitted"
ROUND_CLOSED = "model.v1.round.closed"
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
    code_version: str = ""
    """Version of the maskline code that produced this version (registration, merge). Added in 1.1."""


class ModelRegistered(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelVersion


MergeMethod = Literal["avg", "max", "absmax", "weighted", "median", "task_arithmetic", "ties"]


class VersionRef(msgspec.Struct, frozen=True):
    name: ModelName
    version: Annotated[int, msgspec.Meta(ge=1)]


class ModelMergeRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Merge registered versions of one architecture into a new version of `name`. Added in 1.1."""

    models: tuple[VersionRef, ...]
    method: MergeMethod = "avg"
    name: ModelName
    """Model the merged version is registered under (a new name, or one of the inputs' names)."""
    weights: tuple[float, ...] = ()
    """`weighted` (FedAvg): one non-negative weight per model, e.g. its sample count."""
    base: VersionRef | None = None
    """`task_arithmetic` / `ties`: the shared base model the inputs were trained from."""
    scale: float = 1.0
    density: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.2
    bn_dataset: str | None = None
    """Re-estimate BatchNorm statistics on the images under this dataset prefix after merging."""


class ModelMerged(msgspec.Struct, frozen=True, kw_only=True):
    model: ModelVersion
    method: MergeMethod
    parents: tuple[VersionRef, ...]
    seconds: float
    bn_reestimated: bool = False


SiteName = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,64}$")]


class RoundOpened(msgspec.Struct, frozen=True, kw_only=True):
    """A federated round starts from `model`; each listed site trains on its own data and submits
    an update. The envelope's job id is the federation id for every event of it. Added in 1.1."""

    round: Annotated[int, msgspec.Meta(ge=1)]
    rounds: Annotated[int, msgspec.Meta(ge=1)]
    """Total rounds: after closing round r < rounds the merge service opens round r + 1 from the merged model."""
    model: VersionRef
    name: ModelName
    """The global model's name: each round registers its merged version under it."""
    sites: tuple[SiteName, ...]
    quorum: Annotated[int, msgspec.Meta(ge=1)]
    """At the deadline, merge if at least this many sites reported; otherwise the federation fails."""
    deadline_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    opened_at: datetime | None = None
    method: MergeMethod = "weighted"


class SiteUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """A site's locally trained weights for one round (TorchScript in object storage)."""

    round: int
    site: SiteName
    weights: ObjectRef
    samples: Annotated[int, msgspec.Meta(ge=1)]
    metrics: dict[str, float] = {}


class RoundClosed(msgspec.Struct, frozen=True, kw_only=True):
    round: int
    model: VersionRef
    """The merged global model of this round."""
    sites: tuple[str, ...]
    """Sites whose updates were merged."""
    missing: tuple[str, ...] = ()
    final: bool = False


#: Payload type of every subject in this family.
PAYLOADS: dict[str, type[msgspec.Struct]] = {
    REGISTERED: ModelRegistered,
    MERGE_REQUESTED: ModelMergeRequested,
    MERGED: ModelMerged,
    ROUND_OPENED: RoundOpened,
    UPDATE_SUBMITTED: SiteUpdate,
    ROUND_CLOSED: RoundClosed,
}
