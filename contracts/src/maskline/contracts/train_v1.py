"""Training contracts (the model family, major version 1): a training or fine-tuning job, its
progress step by step, and the run it leaves behind — the story of the version it registers.
Added in 1.11.

A run is named by the job that made it (`run` = the job id). Its record (`TrainingRun`) holds
everything needed to make it again: the parent version or the architecture, the dataset and the
hash of its content, every hyper-parameter, the seed and the code version; plus the loss and
validation curves it drew on the way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from maskline.contracts.common_v1 import DatasetPrefix, RecordedDatasetPrefix, WrittenModelFile
from maskline.contracts.envelope import Token
from maskline.contracts.model_v1 import Architecture, ModelName, ModelVersion, SiteUpdate, VersionRef

TRAIN_REQUESTED = "model.v1.train.requested"
TRAIN_PROGRESSED = "model.v1.train.progressed"
TRAINED = "model.v1.trained"
TRAIN_CANCELLED = "model.v1.train.cancelled"
SWEEP_REQUESTED = "model.v1.sweep.requested"
SWEEP_PROGRESSED = "model.v1.sweep.progressed"
SWEPT = "model.v1.swept"

Loss = Literal["cross-entropy", "dice", "cross-entropy+dice"]
Optimiser = Literal["adamw", "adam", "sgd"]
Schedule = Literal["constant", "cosine", "one-cycle", "step"]
#: Experiments group runs (a sweep's trials, or runs a person wants side by side).
ExperimentName = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9_-]{0,63}$")]
#: A parameter-name prefix (`enc1.`, `down.0`): the parameters under it are not trained.
ParameterPrefix = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.]{1,128}$")]


class Hyperparameters(msgspec.Struct, frozen=True, kw_only=True):
    """How the network is trained. Everything that changes the result is here (with the seed), so
    a run can be made again from its record."""

    loss: Loss = "cross-entropy"
    """Pixels outside the image (letterbox padding) never count."""
    optimiser: Optimiser = "adamw"
    learning_rate: Annotated[float, msgspec.Meta(gt=0.0, le=10.0)] = 1e-3
    weight_decay: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1e-4
    momentum: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)] = 0.9
    """`sgd` only."""
    schedule: Schedule = "cosine"
    """Of the learning rate over the steps: `cosine` to zero, `one-cycle` (warm-up then cosine),
    `step` (x0.1 at 2/3 of the steps), `constant`."""
    steps: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 200
    """Optimiser steps (one batch each)."""
    batch: Annotated[int, msgspec.Meta(ge=1, le=512)] = 8
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    """Seeds the initial weights (from scratch), the validation split, the batches and the flips."""
    freeze: tuple[ParameterPrefix, ...] = ()
    """Parameters whose names start with one of these keep their values (fine-tuning a head)."""
    validation_share: Annotated[float, msgspec.Meta(ge=0.0, le=0.5)] = 0.2
    """Share of the dataset's labelled images held out of training and scored every
    `validate_every` steps (at least one image when the share is above zero)."""
    validate_every: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 50
    flip: bool = True
    """Random horizontal flips of the training batches."""


class FederationSeat(msgspec.Struct, frozen=True, kw_only=True):
    """The round of a federation a training is the site's update for. The site is the training's
    tenant, and must be one of the federation's sites. Added in 1.12."""

    federation: Token
    owner: Token
    """The federation's tenant (who started it)."""
    round: Annotated[int, msgspec.Meta(ge=1)]


class TrainRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Train a network on one of the tenant's labelled datasets and register the result as the next
    version of the tenant's model `name`: fine-tune `base`, or train `architecture` from scratch."""

    name: ModelName
    dataset: DatasetPrefix
    """`datasets/<tenant>/<name>/`: `images/` with `masks/` of class ids (an expanded dataset too)."""
    base: VersionRef | None = None
    """Fine-tune this version (one the tenant may use; TorchScript, float): its labels, input size and
    preprocessing carry over."""
    architecture: Architecture | None = None
    """Train from scratch: a class of an allowed package, built with its kwargs and the seed."""
    labels: Annotated[tuple[str, ...], msgspec.Meta(max_length=256)] = ()
    """From scratch: class names, background first."""
    input_size: tuple[Annotated[int, msgspec.Meta(ge=8, le=1024)], Annotated[int, msgspec.Meta(ge=8, le=1024)]] | None = None
    """From scratch: (height, width) of the network's input."""
    hyperparameters: Hyperparameters = Hyperparameters()
    evaluate_on: DatasetPrefix | None = None
    """A labelled held-out dataset: the new version is evaluated on it through serving (a follow-up
    evaluation job, `<job id>-eval`)."""
    experiment: ExperimentName | None = None
    reproduces: str | None = None
    """The run this one makes again (`runs reproduce`): its record is compared with this one's."""
    checkpoint_every: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 25
    """Steps between checkpoints in the store: a worker that dies resumes from the last one. A cancel
    or a passed deadline is seen at the next step whatever this is."""
    federation: FederationSeat | None = None
    """Train as a site of this federation's open round: on the tenant's own dataset, from the round's
    global model (leave `base` empty) or, with `architecture`, from the site's own initialisation
    (the round's labels, input size and preprocessing); the result is submitted to the round as the
    site's update (`model.v1.update.submitted`), not registered as a version. Added in 1.12."""


class SiteTraining(msgspec.Struct, frozen=True, kw_only=True):
    """A site's standing consent to train every round of a federation through maskline: when a round
    opens, the train service starts the site's training for it (job `keys.site_training_job`) on the
    site's own dataset. Kept in the site's part of the store (`keys.site_training`). Added in 1.12."""

    dataset: DatasetPrefix
    hyperparameters: Hyperparameters = Hyperparameters()
    """Each round's run adds the round number less one to the seed (a new draw of batches per round)."""
    architecture: Architecture | None = None
    """Round 1 trains this network from the site's own initialisation instead of the round's model
    (independently initialised sites); later rounds always start from the round's global model."""
    checkpoint_every: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 25
    enrolled: datetime


class CurvePoint(msgspec.Struct, frozen=True, kw_only=True):
    step: int
    loss: float
    """Mean training loss over the steps since the last point."""
    learning_rate: float
    validation_miou: float | None = None
    """On the held-out split, where this step scored it."""


class TrainProgressed(msgspec.Struct, frozen=True, kw_only=True):
    step: int
    steps: int
    point: CurvePoint
    resumed_from: int = 0
    """The checkpoint's step this attempt started from (0: from the start)."""
    device: str = "cpu"


class TrainingRun(msgspec.Struct, frozen=True, kw_only=True):
    """A finished run: how its version was made, and how it went."""

    run: str
    """The training job's id."""
    tenant: str
    name: ModelName
    model: VersionRef | None
    """The version it registered (none for a federation site's run: its update went to the round)."""
    base: VersionRef | None
    architecture: Architecture | None
    dataset: RecordedDatasetPrefix
    dataset_sha256: str
    """Of the sorted (image, image sha256, mask sha256) list, as evaluations hash it."""
    images: int
    validation_images: int
    hyperparameters: Hyperparameters
    evaluate_on: RecordedDatasetPrefix | None = None
    experiment: str | None = None
    reproduces: str | None = None
    curve: tuple[CurvePoint, ...]
    train_loss: float
    """Mean of the last tenth of the curve's points' losses (at least the last point's)."""
    validation_miou: float | None
    """At the last step (none without a held-out split)."""
    code_version: str
    torch: str
    device: str
    resumes: int = 0
    """How many times a worker took the run up again from a checkpoint."""
    seconds: float
    """Training time of the attempt that finished (after its resume)."""
    created: datetime
    request: TrainRequested
    """The command as it came: what `runs reproduce` sends again."""
    update: SiteUpdate | None = None
    """A federation site's run: the update it submitted to the round. Added in 1.12."""


class Trained(msgspec.Struct, frozen=True, kw_only=True):
    run: TrainingRun
    model: ModelVersion | None
    """None for a federation site's run (1.12): its weights went to the round as the site's update."""
    record: WrittenModelFile
    """The run as a JSON document (`GET /v1/runs/{run}`)."""


class TrainCancelled(msgspec.Struct, frozen=True, kw_only=True):
    by: str
    """The tenant that cancelled it."""


#: The hyper-parameters a sweep may search over.
Searchable = Literal["learning_rate", "weight_decay", "momentum", "batch", "steps", "optimiser", "schedule", "loss"]
Choice = str | int | float
#: The searchable hyper-parameters drawn as integers.
INTEGER_PARAMETERS = ("batch", "steps")


class SearchDimension(msgspec.Struct, frozen=True, kw_only=True):
    """One hyper-parameter's range: `low`..`high` (on a log scale with `log`), or a set of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Choice, ...] = ()


class SweepRequested(msgspec.Struct, frozen=True, kw_only=True):
    """Many trials of one training over a search space, chosen by Optuna's sampler (TPE by default),
    weak trials pruned from their validation mIoU on the way (the median rule). Each trial is a
    training job of its own (`<sweep job>-t<n>`), spread over the train workers; the sweep maximises
    the trials' validation mIoU."""

    training: TrainRequested
    """The trials' template: the space replaces its hyper-parameters, one trial at a time."""
    space: dict[Searchable, SearchDimension]
    trials: Annotated[int, msgspec.Meta(ge=1, le=200)] = 8
    parallel: Annotated[int, msgspec.Meta(ge=1, le=32)] = 1
    """Trials in flight at once (as many train workers as there are take them up)."""
    sampler: Literal["tpe", "random"] = "tpe"
    pruning: bool = True
    """Stop a trial whose validation mIoU at a step is below the median of earlier trials' at that step
    (after two trials completed)."""
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    """Seeds the sampler: the same sweep asks the same trials."""
    start_with: tuple[dict[Searchable, Choice], ...] = ()
    """Trials to run first, as they are (known settings to start the search from)."""


class TrialResult(msgspec.Struct, frozen=True, kw_only=True):
    number: int
    run: str
    """The trial's training job (its run, once it completed)."""
    params: dict[str, Choice]
    state: Literal["running", "complete", "pruned", "failed"]
    value: float | None = None
    """Validation mIoU at the trial's last step (complete), or the last one it reported."""
    step: int = 0
    """The last step it reported."""
    model: VersionRef | None = None
    """The version a complete trial registered."""


class SweepProgressed(msgspec.Struct, frozen=True, kw_only=True):
    trial: TrialResult
    done: int
    trials: int


class Swept(msgspec.Struct, frozen=True, kw_only=True):
    experiment: str
    trials: tuple[TrialResult, ...]
    best: TrialResult | None
    """The complete trial with the highest validation mIoU (none when none completed)."""


PAYLOADS: dict[str, type[msgspec.Struct]] = {
    TRAIN_REQUESTED: TrainRequested,
    TRAIN_PROGRESSED: TrainProgressed,
    TRAINED: Trained,
    TRAIN_CANCELLED: TrainCancelled,
    SWEEP_REQUESTED: SweepRequested,
    SWEEP_PROGRESSED: SweepProgressed,
    SWEPT: Swept,
}
