"""Training over HTTP: start a run (fine-tune or from scratch), cancel it, list and read finished
runs, put runs side by side, and make a run again from its record (`reproduce`)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from maskline.contracts import train_v1
from maskline.contracts.http_v1 import JobView, RunComparison, RunSummary, SweepBody, TrainBody
from maskline.contracts.subjects import GATEWAY
from maskline.contracts.train_v1 import INTEGER_PARAMETERS, Hyperparameters, SweepRequested, TrainingRun, TrainRequested
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.errors import Conflict, NotFound, Unprocessable
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS
from maskline.services.gateway.data.datasets import prefix as dataset_prefix
from maskline.services.gateway.models.evaluations import evaluations_at
from maskline.services.gateway.tracking.job_routes import CommandJobs, job_view
from maskline.shared import keys
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.fence import Fences
from maskline.shared.jobs.state import JobStore
from maskline.shared.jobs.training_cancel import cancel_training
from maskline.shared.storage import ObjectNotFound

#: How far a loss or mIoU may move between a run and its reproduction when either ran on a GPU
#: (its kernels are not deterministic); on the CPU a reproduction must be exact.
GPU_TOLERANCE = 0.02
_decoder = msgspec.json.Decoder(TrainingRun)


async def training_request(models: ModelLookup, tenant: str, data: TrainBody) -> TrainRequested:
    """The bus command for a body: dataset names become the tenant's prefixes, the base must be a
    version the tenant may use (else 404, as if it did not exist), the contract's bounds hold."""
    if (data.base is None) == (data.architecture is None):
        raise Unprocessable("name either `base` (a version to fine-tune) or `architecture` (to train from scratch)")
    if data.base is not None:
        base = await models.model(tenant, data.base.name, data.base.version, data.base.owner)
        if base.format != "torchscript" or base.precision != "fp32":
            raise Unprocessable(
                f"{base.name}/{base.version} is {base.format} {base.precision}: fine-tune a float TorchScript version",
                code="untrainable_model",
            )
    raw: dict[str, Any] = msgspec.to_builtins(data)
    raw.pop("webhook_url", None)
    raw["dataset"] = dataset_prefix(tenant, data.dataset)
    if data.evaluate_on:
        raw["evaluate_on"] = dataset_prefix(tenant, data.evaluate_on)
    try:
        return msgspec.convert(raw, TrainRequested)
    except msgspec.ValidationError as exc:
        raise Unprocessable(f"invalid training request: {exc}") from exc


async def read_run(store: Store, tenant: str, run: str) -> TrainingRun:
    try:
        return _decoder.decode(await store.get(keys.training_run(tenant, keys.segment(run, "run"))))
    except (ObjectNotFound, keys.InvalidKey) as exc:
        raise NotFound(f"no finished run {run}", code="run_not_found") from exc


async def summary(store: Store, tenant: str, run: TrainingRun) -> RunSummary:
    evaluated = None
    ref = run.model
    if run.evaluate_on is not None and ref is not None:
        found = await evaluations_at(store, tenant, ref.owner or run.tenant, ref.name, ref.version)
        on_held_out = [e for e in found if e.dataset == run.evaluate_on]
        evaluated = on_held_out[0].miou if on_held_out else None
    return RunSummary(
        run=run.run,
        name=run.name,
        model=run.model,
        base=run.base,
        experiment=run.experiment,
        dataset=run.dataset,
        dataset_sha256=run.dataset_sha256,
        hyperparameters=run.hyperparameters,
        train_loss=run.train_loss,
        validation_miou=run.validation_miou,
        evaluation_miou=evaluated,
        device=run.device,
        seconds=run.seconds,
        created=run.created,
        reproduces=run.reproduces,
    )


def compare(runs: list[TrainingRun], summaries: list[RunSummary]) -> RunComparison:
    first = runs[0]
    hyper = [msgspec.to_builtins(r.hyperparameters) for r in runs]
    differing = {name: [str(h[name]) for h in hyper] for name in hyper[0] if any(h[name] != hyper[0][name] for h in hyper[1:])}
    exact = all(r.curve == first.curve for r in runs[1:])
    difference = 0.0
    for other in runs[1:]:
        for a, b in zip(first.curve, other.curve, strict=False):
            difference = max(difference, abs(a.loss - b.loss), abs((a.validation_miou or 0.0) - (b.validation_miou or 0.0)))
        if len(first.curve) != len(other.curve):
            difference = float("inf")
    on_cpu = all(r.device == "cpu" for r in runs)
    return RunComparison(
        runs=summaries,
        differing=differing,
        same_data=all(r.dataset_sha256 == first.dataset_sha256 for r in runs),
        exact=exact,
        max_difference=round(difference, 6) if difference != float("inf") else -1.0,
        tolerance=0.0 if on_cpu else GPU_TOLERANCE,
        reproduced=exact if on_cpu else 0 <= difference <= GPU_TOLERANCE,
    )


class TrainingController(Controller):
    path = "/v1"
    tags = ["training"]

    @post(
        "/trainings",
        status_code=HTTP_202_ACCEPTED,
        summary="Train a network on one of your labelled datasets: fine-tune a version, or an architecture from scratch (a job)",
        opt={ANSWERS: Answers(refusals=NAME_REFUSALS + Unprocessable.coded("unprocessable", "untrainable_model"))},
    )
    async def train(self, models: ModelLookup, command_jobs: CommandJobs, tenant: str, data: TrainBody) -> Response[JobView]:
        request = await training_request(models, tenant, data)
        return await command_jobs.submit(tenant, train_v1.TRAIN_REQUESTED, request, webhook_url=data.webhook_url)

    @post(
        "/sweeps",
        status_code=HTTP_202_ACCEPTED,
        summary="Many trials of a training over a search space, chosen by Optuna (TPE) and pruned by the median rule (a job)",
        opt={ANSWERS: Answers(refusals=NAME_REFUSALS + Unprocessable.coded("unprocessable", "untrainable_model"))},
    )
    async def sweep(self, models: ModelLookup, command_jobs: CommandJobs, tenant: str, data: SweepBody) -> Response[JobView]:
        training = await training_request(models, tenant, data.training)
        if training.hyperparameters.validation_share <= 0:
            raise Unprocessable("a sweep maximises the validation mIoU: give the training a validation_share above 0")
        if not data.space:
            raise Unprocessable("a sweep searches a space: name at least one hyper-parameter's range or choices")
        raw: dict[str, Any] = msgspec.to_builtins(data)
        raw.pop("webhook_url", None)
        raw["training"] = msgspec.to_builtins(training)
        try:
            request = msgspec.convert(raw, SweepRequested)
            hyper = msgspec.to_builtins(request.training.hyperparameters)
            for fixed in request.start_with:  # each value must be one the training takes
                msgspec.convert({**hyper, **fixed}, Hyperparameters)
            for name, dimension in request.space.items():
                for value in (*dimension.choices, *(v for v in (dimension.low, dimension.high) if v is not None)):
                    whole = int(value) if name in INTEGER_PARAMETERS and isinstance(value, float) else value
                    msgspec.convert({**hyper, name: whole}, Hyperparameters)
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid sweep: {exc}") from exc
        return await command_jobs.submit(tenant, train_v1.SWEEP_REQUESTED, request, webhook_url=data.webhook_url)

    @get(
        "/sweeps/{job_id:str}",
        summary="A sweep's trials so far (parameters, state, validation mIoU, version) and the best one",
        opt={ANSWERS: Answers(refusals=NotFound.coded("sweep_not_found"))},
    )
    async def sweep_trials(self, store: Store, tenant: str, job_id: str) -> train_v1.Swept:
        try:
            return msgspec.json.decode(
                await store.get(keys.sweep_view(tenant, keys.segment(job_id, "sweep"))), type=train_v1.Swept
            )
        except (ObjectNotFound, keys.InvalidKey) as exc:
            raise NotFound(f"no sweep {job_id} (or it has not asked for a trial yet)", code="sweep_not_found") from exc

    @delete(
        "/trainings/{job_id:str}",
        status_code=HTTP_200_OK,
        summary="Cancel a training or a sweep (its running trials too): it stops at its next step, no version stands (audited)",
        opt={ANSWERS: Answers(refusals=Conflict.coded("job_finished"))},
    )
    async def cancel(
        self, intake: Intake, cancellations: Cancellations, fences: Fences, job_store: JobStore, tenant: str, job_id: str
    ) -> JobView:
        state = await job_store.get(tenant, job_id)
        if state is None or state.kind not in ("training", "sweep"):
            raise NotFound(f"no training or sweep {job_id}")
        if state.finished:
            raise Conflict(f"{state.kind} {job_id} is {state.status} already", code="job_finished")
        intake.require_bus()
        event = await cancel_training(
            cancellations,
            fences,
            tenant=tenant,
            job_id=job_id,
            trace_id=state.trace_id,
            by=tenant,
            source=GATEWAY,
            sweep=state.kind == "sweep",
        )
        if event is None:
            raise Conflict(f"{state.kind} {job_id} finished before the cancel reached it", code="job_finished")
        return job_view(await job_store.apply(event))

    @get("/runs", summary="Your finished training runs, newest first (one experiment's with `experiment`)")
    async def runs(
        self,
        store: Store,
        tenant: str,
        experiment: Annotated[str | None, Parameter(query="experiment", description="only this experiment's runs")] = None,
    ) -> list[RunSummary]:
        found = []
        for key in await store.list(keys.runs(tenant)):
            if key.endswith("/run.json"):
                run = _decoder.decode(await store.get(key))
                if experiment is None or run.experiment == experiment:
                    found.append(await summary(store, tenant, run))
        return sorted(found, key=lambda s: s.created, reverse=True)

    @get(
        "/runs/compare",
        summary="Runs side by side: hyper-parameters that differ, metrics, and whether the curves are the same",
        opt={ANSWERS: Answers(refusals=NotFound.coded("run_not_found") + Unprocessable.coded())},
    )
    async def compare(
        self,
        store: Store,
        tenant: str,
        run: Annotated[list[str], Parameter(query="run", description="two or more run ids (repeat the parameter)")],
    ) -> RunComparison:
        if len(run) < 2:
            raise Unprocessable("compare two or more runs: ?run=A&run=B")
        runs = [await read_run(store, tenant, r) for r in dict.fromkeys(run)]
        return compare(runs, [await summary(store, tenant, r) for r in runs])

    @get(
        "/runs/{run:str}",
        summary="A finished run's record: parent, data hash, hyper-parameters, code, curves",
        opt={ANSWERS: Answers(refusals=NotFound.coded("run_not_found"))},
    )
    async def run(self, store: Store, tenant: str, run: str) -> TrainingRun:
        return await read_run(store, tenant, run)

    @post(
        "/runs/{run:str}/reproduce",
        status_code=HTTP_202_ACCEPTED,
        summary="Train again from a run's record (same data, parameters, seed); compare the two runs when it is done (a job)",
        opt={ANSWERS: Answers(refusals=NotFound.coded("run_not_found") + Unprocessable.coded("not_reproducible"))},
    )
    async def reproduce(
        self, models: ModelLookup, store: Store, command_jobs: CommandJobs, tenant: str, run: str
    ) -> Response[JobView]:
        record = await read_run(store, tenant, run)
        if record.request.federation is not None:
            raise Unprocessable(
                f"{run} was a site's update to round {record.request.federation.round} of a federation: "
                "the round is closed to it, so it is not made again",
                code="not_reproducible",
            )
        if record.request.base is not None:  # still one the tenant may use (a grant may be gone)
            ref = record.request.base
            await models.model(tenant, ref.name, ref.version, ref.owner)
        request = msgspec.structs.replace(record.request, reproduces=record.run)
        return await command_jobs.submit(tenant, train_v1.TRAIN_REQUESTED, request)
