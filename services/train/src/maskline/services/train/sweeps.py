"""Sweeps: many trials of one training over a search space, with Optuna choosing them.

The sweep's job runs here as a driver that trains nothing itself: it asks Optuna's sampler (TPE, or
random) for a trial's hyper-parameters, publishes that trial as a training job of its own
(`<sweep>-t<n>`, taken up by any train worker), reads each running trial's curve as its worker
writes it, reports the validation mIoU to Optuna at every step it was scored, and cancels a trial
the pruner (the median rule) says is weak — through the same fence as a tenant's cancel. What it has
asked and been told is kept in the store after every change, so a driver that dies is taken up
again by another (the message comes back) and rebuilds its study from there: finished trials are
added to a new study as they ended, running ones are asked again with their own parameters and go
on with their own jobs. Decision 0018.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import optuna
import structlog
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from maskline.contracts import train_v1
from maskline.contracts.envelope import Envelope, job_event, next_event, now
from maskline.contracts.model_v1 import VersionRef
from maskline.contracts.train_v1 import (
    INTEGER_PARAMETERS,
    Choice,
    CurvePoint,
    SearchDimension,
    SweepRequested,
    TrainingRun,
    TrialResult,
)
from maskline.shared import keys
from maskline.shared.errors import DeadlineExceeded, PermanentError
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.fence import Fences
from maskline.shared.jobs.state import JobStore
from maskline.shared.jobs.training_cancel import cancel_training
from maskline.shared.service.runtime import Runtime
from maskline.shared.storage import ObjectNotFound

SOURCE = "train"
JSON = "application/json"
#: How often running trials' curves and states are read.
POLL_S = 1.0
#: `<sweep job id>-t<n>` must fit a job id (128 characters) for up to 200 trials.
MAX_SWEEP_ID = 120
#: Trials that complete before the pruner judges any other (the median needs a few to stand on).
STARTUP_TRIALS = 2
log = structlog.get_logger("sweeps")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def distributions(space: dict[str, SearchDimension]) -> dict[str, BaseDistribution]:
    """Optuna's distributions of a search space (PermanentError for a range that is not one)."""
    found: dict[str, BaseDistribution] = {}
    for name, dimension in space.items():
        if dimension.choices:
            found[name] = CategoricalDistribution(dimension.choices)
            continue
        low, high = dimension.low, dimension.high
        if low is None or high is None or not low < high or (dimension.log and low <= 0):
            raise PermanentError(f"{name}: give choices, or low < high (both above 0 with log)", code="invalid_request")
        integer = name in INTEGER_PARAMETERS
        found[name] = (
            IntDistribution(int(low), int(high), log=dimension.log)
            if integer
            else FloatDistribution(low, high, log=dimension.log)
        )
    return found


def check_start(space: dict[str, BaseDistribution], start_with: tuple[dict[Any, Choice], ...]) -> None:
    """Each setting to start with names only the space's parameters, each value inside its range."""
    for fixed in start_with:
        for name, value in fixed.items():
            if not _inside(space.get(name), value):
                raise PermanentError(f"start_with: {name}={value!r} is not in the search space", code="invalid_request")


def _inside(distribution: BaseDistribution | None, value: Choice) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(distribution, FloatDistribution | IntDistribution):
        return not isinstance(value, str) and distribution.low <= value <= distribution.high
    return False


TrialStatus = Literal["running", "complete", "pruned", "failed"]


class TrialRecord(msgspec.Struct, kw_only=True):
    """One trial as the sweep keeps it (what rebuilding the study needs)."""

    number: int
    run: str
    params: dict[str, Choice]
    state: TrialStatus = "running"
    value: float | None = None
    reported: dict[str, float] = {}
    """Step (as text: JSON keys) → validation mIoU reported to Optuna."""
    model: VersionRef | None = None

    def result(self) -> TrialResult:
        step = max((int(s) for s in self.reported), default=0)
        return TrialResult(
            number=self.number,
            run=self.run,
            params=self.params,
            state=self.state,
            value=self.value,
            step=step,
            model=self.model,
        )


class SweepState(msgspec.Struct, kw_only=True):
    trials: list[TrialRecord] = []


@dataclass
class Sweep:
    """One sweep's driver while it runs."""

    env: Envelope[SweepRequested]
    study: optuna.Study
    space: dict[str, BaseDistribution]
    state: SweepState
    live: dict[int, optuna.Trial] = field(default_factory=dict)
    """Trial number → Optuna's trial, for the trials still running."""

    @property
    def request(self) -> SweepRequested:
        return self.env.data


class SweepJobs:
    def __init__(self, runtime: Runtime, fences: Fences, job_store: JobStore) -> None:
        self.runtime, self.store, self.bus, self.fences, self.job_store = runtime, runtime.store, runtime.bus, fences, job_store

    @property
    def cancellations(self) -> Cancellations:
        assert self.runtime.cancellations is not None  # train reads the cancels bucket
        return self.runtime.cancellations

    async def run(self, env: Envelope[SweepRequested]) -> list[Envelope[Any]]:
        request = env.data
        if request.training.hyperparameters.validation_share <= 0:
            raise PermanentError(
                "a sweep maximises the validation mIoU: give the training a validation_share", code="invalid_request"
            )
        if request.training.federation is not None:  # each trial would send the round an update
            raise PermanentError("a sweep's trials cannot be a federation site's updates", code="invalid_request")
        if len(env.job_id) > MAX_SWEEP_ID:  # its trials' ids must stay apart: `<id>-t<n>` within 128 characters
            raise PermanentError(f"a sweep's job id has at most {MAX_SWEEP_ID} characters", code="invalid_request")
        space = distributions({str(k): v for k, v in request.space.items()})
        check_start(space, request.start_with)
        sweep = await self._open(env, space)
        while True:
            if self._stopped(env):
                await self._stop_trials(sweep)
                if env.deadline is not None and now() > env.deadline:
                    raise DeadlineExceeded(f"the sweep's deadline {env.deadline} passed")
                return []  # its tenant cancelled it: the cancel went out through the sweep's fence
            self._ask(sweep)
            await self._publish_new(sweep)
            if all(t.state != "running" for t in sweep.state.trials) and len(sweep.state.trials) >= request.trials:
                break
            await asyncio.sleep(POLL_S)
            for record in [t for t in sweep.state.trials if t.state == "running"]:
                await self._follow(sweep, record)
        return [next_event(env, train_v1.SWEPT, SOURCE, self.view(sweep))]

    def _stopped(self, env: Envelope[SweepRequested]) -> bool:
        return self.cancellations.cancelled(env.tenant, env.job_id) or (env.deadline is not None and now() > env.deadline)

    async def _stop_trials(self, sweep: Sweep) -> None:
        """A cancelled sweep (or one past its deadline) cancels the trials it still runs."""
        env = sweep.env
        for record in [t for t in sweep.state.trials if t.state == "running"]:
            await self._cancel_trial(env, record, by="sweep cancelled")
            record.state = "failed"
        await self._save(sweep)

    @staticmethod
    def experiment(env: Envelope[SweepRequested]) -> str:
        return env.data.training.experiment or f"sweep-{env.job_id[:12].lower()}"

    async def _open(self, env: Envelope[SweepRequested], space: dict[str, BaseDistribution]) -> Sweep:
        request = env.data
        sampler: optuna.samplers.BaseSampler = (
            optuna.samplers.TPESampler(seed=request.seed, n_startup_trials=max(2, request.trials // 4))
            if request.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=request.seed)
        )
        pruner: optuna.pruners.BasePruner = (
            optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS) if request.pruning else optuna.pruners.NopPruner()
        )
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        try:
            state = msgspec.json.decode(await self.store.get(keys.sweep_state(env.tenant, env.job_id)), type=SweepState)
        except ObjectNotFound:
            state = SweepState()
        sweep = Sweep(env, study, space, state)
        for record in state.trials:  # taken up again: the study as it stood
            if record.state == "running":
                study.enqueue_trial(dict(record.params))
                trial = sweep.live[record.number] = study.ask(space)
                for step, value in record.reported.items():  # what the pruner had seen of it
                    trial.report(value, int(step))
                continue
            study.add_trial(
                optuna.trial.create_trial(
                    state={"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(record.state, TrialState.FAIL),
                    value=record.value if record.state == "complete" else None,
                    params=dict(record.params),
                    distributions=space,
                    intermediate_values={int(step): value for step, value in record.reported.items()},
                )
            )
        for fixed in request.start_with[len(state.trials) :]:
            study.enqueue_trial({str(k): v for k, v in fixed.items()})
        return sweep

    def _ask(self, sweep: Sweep) -> None:
        """New trials while fewer than `parallel` run and the sweep has not asked for all."""
        trials = sweep.state.trials
        while len(trials) < sweep.request.trials and sum(t.state == "running" for t in trials) < sweep.request.parallel:
            trial = sweep.study.ask(sweep.space)
            number = len(trials)
            sweep.live[number] = trial
            run = keys.follow_up_job(sweep.env.job_id, f"t{number}")
            trials.append(TrialRecord(number=number, run=run, params=dict(trial.params)))

    async def _publish_new(self, sweep: Sweep) -> None:
        """Each trial's training job (its id is fixed, so publishing it again is a duplicate the bus drops)."""
        await self._save(sweep)
        env, request = sweep.env, sweep.request
        for record in sweep.state.trials:
            if record.state != "running":
                continue
            hyper = msgspec.structs.replace(request.training.hyperparameters, **record.params)
            # A report (curve and checkpoint) at every validation at least: the pruner judges from them.
            every = min(request.training.checkpoint_every, hyper.validate_every)
            training = msgspec.structs.replace(
                request.training, hyperparameters=hyper, experiment=self.experiment(env), checkpoint_every=every
            )
            command = job_event(
                train_v1.TRAIN_REQUESTED, SOURCE, training, tenant=env.tenant, job_id=record.run, trace_id=env.trace_id
            )
            await self.bus.publish(command)

    async def _follow(self, sweep: Sweep, record: TrialRecord) -> None:
        trial = sweep.live[record.number]
        env = sweep.env
        state = await self.job_store.get(env.tenant, record.run)
        if state is not None and state.status == "completed":
            run = msgspec.json.decode(await self.store.get(keys.training_run(env.tenant, record.run)), type=TrainingRun)
            self._report(sweep, record, list(run.curve))
            record.state, record.value, record.model = "complete", run.validation_miou, run.model
            sweep.study.tell(trial, run.validation_miou if run.validation_miou is not None else 0.0)
            await self._ended(sweep, record)
            return
        if state is not None and state.status in ("failed", "cancelled"):
            record.state = "failed"
            sweep.study.tell(trial, state=TrialState.FAIL)
            await self._ended(sweep, record)
            return
        try:
            curve = msgspec.json.decode(await self.store.get(keys.training_curve(env.tenant, record.run)), type=list[CurvePoint])
        except ObjectNotFound:
            return  # not started yet
        if self._report(sweep, record, curve) and trial.should_prune():
            if not await self._cancel_trial(env, record, by="sweep pruner"):
                return  # it completed meanwhile: the next poll tells its value
            record.state = "pruned"
            sweep.study.tell(trial, state=TrialState.PRUNED)
            await self._ended(sweep, record)

    async def _cancel_trial(self, env: Envelope[SweepRequested], record: TrialRecord, *, by: str) -> bool:
        """Cancel a trial's training (as its tenant would); False when it had finished first."""
        cancelled = await cancel_training(
            self.cancellations, self.fences, tenant=env.tenant, job_id=record.run, trace_id=env.trace_id, by=by, source=SOURCE
        )
        return cancelled is not None

    @staticmethod
    def _report(sweep: Sweep, record: TrialRecord, curve: list[CurvePoint]) -> bool:
        """Report the validation points Optuna has not seen yet; whether there was one."""
        trial = sweep.live[record.number]
        new = False
        for point in curve:
            if point.validation_miou is not None and str(point.step) not in record.reported:
                trial.report(point.validation_miou, point.step)
                record.reported[str(point.step)] = point.validation_miou
                record.value = point.validation_miou
                new = True
        return new

    async def _ended(self, sweep: Sweep, record: TrialRecord) -> None:
        sweep.live.pop(record.number, None)
        await self._save(sweep)
        done = sum(t.state != "running" for t in sweep.state.trials)
        progress = train_v1.SweepProgressed(trial=record.result(), done=done, trials=sweep.request.trials)
        await self.bus.publish(next_event(sweep.env, train_v1.SWEEP_PROGRESSED, SOURCE, progress, part=record.number))
        log.info("sweep.trial_ended", job_id=sweep.env.job_id, trial=record.number, state=record.state, value=record.value)

    def view(self, sweep: Sweep) -> train_v1.Swept:
        results = tuple(t.result() for t in sweep.state.trials)
        complete = [r for r in results if r.state == "complete" and r.value is not None]
        best = max(complete, key=lambda r: r.value or 0.0, default=None)
        return train_v1.Swept(experiment=self.experiment(sweep.env), trials=results, best=best)

    async def _save(self, sweep: Sweep) -> None:
        tenant, job_id = sweep.env.tenant, sweep.env.job_id
        await self.store.put(keys.sweep_state(tenant, job_id), msgspec.json.encode(sweep.state), JSON)
        await self.store.put(keys.sweep_view(tenant, job_id), msgspec.json.encode(self.view(sweep)), JSON)
