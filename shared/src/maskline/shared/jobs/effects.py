"""What each job event does to its job's state: one small function per payload type, in one table.

The projection (`state._fold`) looks an event's payload up here; a subject of the table with a job
status and no effect here fails `tests/shared/jobs/test_effects.py`, so a new kind of job cannot
forget its rule. Status, rank and the rules every event shares (commands, order, errors cleared on
completion) stay in the fold: here is only what is particular to one payload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from maskline.contracts import dataset_v1, model_v1, seg_v1, train_v1
from maskline.contracts.common_v1 import JobFailed, ModelRef
from maskline.contracts.http_v1 import JobError

if TYPE_CHECKING:
    from maskline.shared.jobs.state import JobState

#: (state, payload) → None; or False when the event must not move the job's status (a merge's
#: registration of its result is not the merge's end).
Effect = Callable[["JobState", Any], bool | None]
EFFECTS: dict[type, Effect] = {}


def effect(payload: type) -> Callable[[Effect], Effect]:
    def register(fn: Effect) -> Effect:
        EFFECTS[payload] = fn
        return fn

    return register


def _status_only(state: JobState, data: Any) -> None:
    """A command's own request: the fold records the job's kind and status, nothing else to do."""


for _command in (
    model_v1.RegisterRequested,
    model_v1.ModelMergeRequested,
    model_v1.QuantizeRequested,
    model_v1.EditRequested,
    model_v1.EvaluateRequested,
    model_v1.FeatureMapsRequested,
    train_v1.TrainRequested,
    train_v1.SweepRequested,
):
    EFFECTS[_command] = _status_only


def _model(version: model_v1.ModelVersion, owner: str = "") -> ModelRef:
    return ModelRef(name=version.name, version=version.version, precision=version.precision, owner=owner)


@effect(seg_v1.SegmentationRequested)
def _requested(state: JobState, data: seg_v1.SegmentationRequested) -> None:
    state.options, state.filename = data.options, data.filename


@effect(seg_v1.SegmentationIngested)
def _ingested(state: JobState, data: seg_v1.SegmentationIngested) -> None:
    state.width, state.height, state.options = data.width, data.height, data.options
    state.timings_ms.update(data.timings_ms)


@effect(seg_v1.SegmentationAugmented)
def _augmented(state: JobState, data: seg_v1.SegmentationAugmented) -> None:
    state.timings_ms.update(data.timings_ms)


@effect(seg_v1.SegmentationInferred)
def _inferred(state: JobState, data: seg_v1.SegmentationInferred) -> None:
    state.model = data.model
    state.timings_ms.update(data.timings_ms)


@effect(seg_v1.SegmentationCompleted)
def _completed(state: JobState, data: seg_v1.SegmentationCompleted) -> None:
    state.model, state.artifacts, state.regions = data.model, data.artifacts, data.regions
    state.confidence, state.objects = data.confidence, data.objects
    state.timings_ms.update(data.timings_ms)


@effect(seg_v1.SegmentationCancelled)
def _cancelled(state: JobState, data: seg_v1.SegmentationCancelled) -> None:
    return None  # the status says it all


@effect(dataset_v1.DatasetExpandRequested)
def _expand_requested(state: JobState, data: dataset_v1.DatasetExpandRequested) -> None:
    state.dataset = data


@effect(dataset_v1.DatasetExpandProgressed)
def _expand_progressed(state: JobState, data: dataset_v1.DatasetExpandProgressed) -> None:
    if data.done >= state.progress.get("done", 0):
        state.progress = {"done": data.done, "total": data.total, "written": data.written, "skipped": data.skipped}


@effect(dataset_v1.DatasetExpanded)
def _expanded(state: JobState, data: dataset_v1.DatasetExpanded) -> None:
    state.artifacts = {"manifest": data.manifest}
    state.progress = {
        "done": data.images,
        "total": data.images,
        "written": data.written,
        "skipped": data.skipped,
        "outputs": data.outputs,
    }


@effect(model_v1.ModelRegistered)
def _registered(state: JobState, data: model_v1.ModelRegistered) -> bool | None:
    if state.kind != "registration":
        return False  # a merge or quantization registers on its way: its own event completes it
    state.model = _model(data.model, data.model.owner)
    state.artifacts = {"weights": data.model.weights}
    return None


@effect(model_v1.ModelMerged)
def _merged(state: JobState, data: model_v1.ModelMerged) -> None:
    state.model = _model(data.model)
    state.artifacts = {"weights": data.model.weights}
    state.timings_ms["merge"] = round(data.seconds * 1000, 1)


@effect(model_v1.QuantizeProgressed)
def _progressed(state: JobState, data: model_v1.QuantizeProgressed) -> None:
    if not state.finished:  # progress may arrive after the result: never move back
        state.progress, state.stage = {"done": data.done, "total": data.total}, data.stage


@effect(model_v1.Quantized)
def _quantized(state: JobState, data: model_v1.Quantized) -> None:
    state.model = _model(data.model)
    state.artifacts = {"weights": data.model.weights, **(data.model.quantization.reports if data.model.quantization else {})}
    state.timings_ms["quantize"] = round(data.seconds * 1000, 1)
    state.stage = None


@effect(model_v1.Evaluated)
def _evaluated(state: JobState, data: model_v1.Evaluated) -> None:
    ref = data.evaluation.model
    state.model = ModelRef(name=ref.name, version=ref.version, precision=data.evaluation.precision, owner=ref.owner or "")
    state.artifacts = {"evaluation": data.result}
    state.stage = None


@effect(model_v1.FeatureMapsRendered)
def _featuremaps(state: JobState, data: model_v1.FeatureMapsRendered) -> None:
    state.artifacts = {"feature-maps": data.picture}


@effect(train_v1.TrainProgressed)
def _train_progressed(state: JobState, data: train_v1.TrainProgressed) -> None:
    if state.finished:  # progress may arrive after the result: never move back
        return
    state.progress = {"done": data.step, "total": data.steps}
    point = data.point
    state.stage = f"train on {data.device}: loss {point.loss:.4f}" + (
        f", validation mIoU {point.validation_miou:.4f}" if point.validation_miou is not None else ""
    )


@effect(train_v1.Trained)
def _trained(state: JobState, data: train_v1.Trained) -> None:
    if data.model is not None:
        state.model = _model(data.model)
        state.artifacts = {"weights": data.model.weights, "run": data.record}
    else:  # a federation site's run: its weights went to the round as the site's update
        state.artifacts = {"run": data.record}
    state.timings_ms["train"] = round(data.run.seconds * 1000, 1)
    state.progress = {"done": data.run.hyperparameters.steps, "total": data.run.hyperparameters.steps}
    state.stage = None


@effect(train_v1.TrainCancelled)
def _train_cancelled(state: JobState, data: train_v1.TrainCancelled) -> None:
    return None  # the status says it all


@effect(train_v1.SweepProgressed)
def _sweep_progressed(state: JobState, data: train_v1.SweepProgressed) -> None:
    if state.finished:
        return
    state.progress = {"done": data.done, "total": data.trials}
    trial = data.trial
    value = f": validation mIoU {trial.value:.4f}" if trial.value is not None else ""
    state.stage = f"trial {trial.number} {trial.state}{value}"


@effect(train_v1.Swept)
def _swept(state: JobState, data: train_v1.Swept) -> None:
    state.progress = {"done": len(data.trials), "total": len(data.trials)}
    best = data.best
    if best is not None and best.model is not None:
        state.model = ModelRef(name=best.model.name, version=best.model.version, owner=best.model.owner or "")
    state.stage = None


@effect(JobFailed)
def _failed(state: JobState, data: JobFailed) -> None:
    state.error = JobError(stage=data.stage, code=data.code, reason=data.reason)
