"""One training job, from its command to its version: resolve what to train, read the data, train in
chunks of `checkpoint_every` steps (progress and a checkpoint after each; a cancel or a passed
deadline stops it there), register the result with its run record, ask for its evaluation."""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
import torch
from torch import nn

from maskline.contracts import train_v1
from maskline.contracts.common_v1 import ObjectRef
from maskline.contracts.envelope import Envelope, next_event, now
from maskline.contracts.model_v1 import Architecture, ModelOutput, ModelVersion, Preprocessing, SiteUpdate, VersionRef
from maskline.contracts.train_v1 import TrainingRun, TrainRequested
from maskline.services.train import data, network
from maskline.services.train.federated import SiteRounds, check_fits
from maskline.services.train.loop import Trainer
from maskline.services.train.settings import TrainSettings
from maskline.shared import keys
from maskline.shared.datasets.labelled import ContentHash, labelled_pairs
from maskline.shared.errors import DeadlineExceeded, PermanentError
from maskline.shared.jobs import followups
from maskline.shared.jobs.fence import Fences, training_fence
from maskline.shared.models.access import ModelAccess
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.store import register_model
from maskline.shared.service.runtime import Runtime
from maskline.shared.storage import ObjectNotFound
from maskline.shared.version import CODE_VERSION

SOURCE = "train"
JSON = "application/json"
log = structlog.get_logger("train")


@dataclass(frozen=True)
class Plan:
    """What a run trains and how its result is described (from its base version, or from scratch)."""

    module: nn.Module
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    preprocessing: Preprocessing
    output: ModelOutput
    architecture: Architecture | None
    base: ModelVersion | None


class TrainJobs:
    def __init__(
        self, runtime: Runtime, registry: ModelRegistry, access: ModelAccess, fences: Fences, settings: TrainSettings
    ) -> None:
        self.runtime, self.store, self.bus, self.fences = runtime, runtime.store, runtime.bus, fences
        self.registry, self.access, self.settings = registry, access, settings
        self.sites = SiteRounds(self.bus, self.store, registry)
        wants_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if wants_cuda else "cpu")

    async def run(self, env: Envelope[TrainRequested]) -> list[Envelope[Any]]:
        request, tenant = env.data, env.tenant
        record_key = keys.training_run(tenant, env.job_id)
        try:  # a redelivery after the version was registered: the same answer, nothing trained again
            raw = await self.store.get(record_key)
            record = ObjectRef(key=record_key, size=len(raw), sha256=hashlib.sha256(raw).hexdigest(), content_type=JSON)
            return await self._finished(env, msgspec.json.decode(raw, type=TrainingRun), record)
        except ObjectNotFound:
            pass
        plan = await self._plan(env)
        examples, digest = await self._examples(request.dataset, plan)
        hyper = request.hyperparameters
        trained, held = data.split(len(examples), hyper.validation_share, hyper.seed)
        network.freeze(plan.module, hyper.freeze)
        if not any(p.requires_grad for p in plan.module.parameters()):
            raise PermanentError("every parameter is frozen: nothing would be trained", code="invalid_request")
        trainer = Trainer(
            plan.module, hyper, plan.output, len(plan.labels), examples.subset(trained), examples.subset(held), self.device
        )
        del examples
        resumed_from = await self._resume(tenant, env.job_id, trainer, digest)
        started = time.perf_counter()

        def stop() -> bool:  # asked before every step, from the training thread
            return self._cancelled(env) or (env.deadline is not None and now() > env.deadline)

        while not trainer.done and not stop():
            await asyncio.to_thread(trainer.advance, trainer.step + request.checkpoint_every, None, stop)
            await self._report(env, trainer, resumed_from)
            if not trainer.done and not stop():
                checkpoint = await asyncio.to_thread(trainer.checkpoint, digest)
                await self.store.put(keys.training_checkpoint(tenant, env.job_id), checkpoint)
        # A cancel that won the job's fence (the tenant's, or a sweep's pruner) leaves no version.
        if self._cancelled(env) or await self.fences.decided(training_fence(tenant, env.job_id)):
            log.info("train.cancelled", job_id=env.job_id, step=trainer.step)
            await self._forget(tenant, env.job_id)
            return []
        if not trainer.done:
            await self._forget(tenant, env.job_id)
            raise DeadlineExceeded(f"the job's deadline {env.deadline} passed at step {trainer.step}")
        if not math.isfinite(trainer.last_loss()):
            await self._forget(tenant, env.job_id)
            raise PermanentError(
                f"the training loss is {trainer.last_loss()} at step {trainer.step}: the run diverged "
                "(a lower learning rate, or another optimiser)",
                code="training_diverged",
            )
        weights = await asyncio.to_thread(network.torchscript, trainer.module)
        validation = trainer.curve[-1].validation_miou if trainer.curve else None
        metrics = {"train_loss": trainer.last_loss(), **({"validation_miou": validation} if validation is not None else {})}
        model: VersionRef | None = None
        update: SiteUpdate | None = None
        if request.federation is not None:  # the round's update (sent once the record stands), no version
            await self.sites.consented(tenant, request.federation, env.job_id)
            update = await self.sites.store_update(tenant, request.federation, weights, len(trained), metrics)
        else:
            model = await self._register(env, plan, weights, metrics)
        sizes = (len(trained) + len(held), len(held))
        run, record = await self._record(env, plan, trainer, digest, sizes, metrics, started, model=model, update=update)
        await self._forget(tenant, env.job_id)
        return await self._finished(env, run, record)

    async def _forget(self, tenant: str, job_id: str) -> None:
        """A run over (or given up): its checkpoint and live curve are no longer needed."""
        for key in (keys.training_checkpoint(tenant, job_id), keys.training_curve(tenant, job_id)):
            await self.store.delete(key)

    def _cancelled(self, env: Envelope[Any]) -> bool:
        cancellations = self.runtime.cancellations
        return cancellations is not None and cancellations.cancelled(env.tenant, env.job_id)

    async def _plan(self, env: Envelope[TrainRequested]) -> Plan:
        request = env.data
        if request.federation is not None:
            return await self._round_plan(env)
        if (request.base is None) == (request.architecture is None):
            raise PermanentError("name either a base version to fine-tune or an architecture to train", code="invalid_request")
        if request.base is not None:
            try:
                base = await self.access.ref(env.tenant, request.base)
            except ModelNotFound as exc:
                raise PermanentError(str(exc), code="model_not_found") from exc
            self._trainable(base)
            module = await asyncio.to_thread(network.from_torchscript, await self.store.get(base.weights.key))
            return Plan(module, base.labels, base.input_size, base.preprocessing, base.output, base.architecture, base)
        assert request.architecture is not None
        if len(request.labels) < 2 or request.input_size is None:
            raise PermanentError(
                "training from scratch needs labels (background first) and an input size", code="invalid_request"
            )
        module = network.from_architecture(
            request.architecture, self.settings.allowed_architectures, request.hyperparameters.seed
        )
        return Plan(module, request.labels, request.input_size, Preprocessing(), ModelOutput(), request.architecture, None)

    async def _round_plan(self, env: Envelope[TrainRequested]) -> Plan:
        """A site's round: from the round's global model, or from the site's own initialisation of an
        architecture that fits it; the round model's labels, input and preprocessing either way."""
        request = env.data
        assert request.federation is not None
        if request.base is not None or request.evaluate_on is not None or request.reproduces is not None:
            raise PermanentError(
                "a federation site's run trains the round's model and reports to the round: no base, evaluate_on or reproduces",
                code="invalid_request",
            )
        await self.sites.consented(env.tenant, request.federation, env.job_id)
        model = await self.sites.round_model(env.tenant, request.federation)
        self._trainable(model)
        round_module = await asyncio.to_thread(network.from_torchscript, await self.store.get(model.weights.key))
        described = (model.labels, model.input_size, model.preprocessing, model.output)
        if request.architecture is None:
            return Plan(round_module, *described, model.architecture, model)
        allowed, seed = self.settings.allowed_architectures, request.hyperparameters.seed
        module = network.from_architecture(request.architecture, allowed, seed)
        check_fits(module, round_module)
        return Plan(module, *described, request.architecture, None)

    @staticmethod
    def _trainable(base: ModelVersion) -> None:
        if base.format != "torchscript" or base.precision != "fp32":
            raise network.Untrainable(
                f"{base.name}/{base.version} is {base.format} {base.precision}: fine-tune a float TorchScript version"
            )
        if base.preprocessing.resize not in data.TRAINABLE_RESIZES:
            raise network.Untrainable(
                f"{base.name}/{base.version} is served with `{base.preprocessing.resize}`; "
                f"training takes {data.TRAINABLE_RESIZES}"
            )

    async def _examples(self, dataset: str, plan: Plan) -> tuple[data.Examples, str]:
        pairs = await labelled_pairs(self.store, dataset, self.settings.max_images)
        if not pairs:
            raise PermanentError(f"{dataset} has no image with a mask (masks/<image stem>.png)", code="no_labelled_images")
        pixels = len(pairs) * plan.input_size[0] * plan.input_size[1]
        if pixels > self.settings.max_pixels:
            raise PermanentError(
                f"{len(pairs)} images at {plan.input_size} are {pixels} pixels; a run holds at most {self.settings.max_pixels}",
                code="too_large",
            )
        digest, read = ContentHash(), []
        for image_key, mask_key in pairs:
            image, mask = await self.store.get(image_key), await self.store.get(mask_key)
            digest.add(image_key, image, mask)
            read.append((image, mask))
        try:
            examples = await asyncio.to_thread(data.examples, read, plan.input_size, plan.preprocessing, len(plan.labels))
        except ValueError as exc:
            raise PermanentError(f"{dataset}: {exc}", code="invalid_mask") from exc
        return examples, digest.hexdigest()

    async def _resume(self, tenant: str, job_id: str, trainer: Trainer, digest: str) -> int:
        """Continue from the run's last checkpoint, if an earlier attempt left one on the same data."""
        try:
            checkpoint = await self.store.get(keys.training_checkpoint(tenant, job_id))
        except ObjectNotFound:
            return 0
        if not await asyncio.to_thread(trainer.restore, checkpoint, digest):
            log.warning("train.checkpoint_of_other_data", job_id=job_id)  # the dataset changed: from the start
            return 0
        log.info("train.resumed", job_id=job_id, step=trainer.step)
        return trainer.step

    async def _report(self, env: Envelope[TrainRequested], trainer: Trainer, resumed_from: int) -> None:
        point = trainer.curve[-1] if trainer.curve else train_v1.CurvePoint(step=trainer.step, loss=0.0, learning_rate=0.0)
        progress = train_v1.TrainProgressed(
            step=trainer.step, steps=trainer.hyper.steps, point=point, resumed_from=resumed_from, device=self.device.type
        )
        await self.bus.publish(next_event(env, train_v1.TRAIN_PROGRESSED, SOURCE, progress, part=trainer.step))
        curve = msgspec.json.encode(trainer.curve)  # what a sweep's pruner reads
        await self.store.put(keys.training_curve(env.tenant, env.job_id), curve, JSON)

    async def _register(self, env: Envelope[TrainRequested], plan: Plan, weights: bytes, metrics: dict[str, float]) -> VersionRef:
        request, base = env.data, plan.base
        origin = (
            f"fine-tuned from {base.owner}/{base.name}/{base.version}"
            if base
            else f"trained from scratch ({plan.architecture.entrypoint if plan.architecture else ''})"
        )
        model = await register_model(
            self.store,
            self.registry,
            self.bus,
            name=request.name,
            weights=weights,
            labels=plan.labels,
            input_size=plan.input_size,
            source=SOURCE,
            tenant=env.tenant,
            description=f"{origin} on {request.dataset} (run {env.job_id})",
            metrics=metrics,
            parent=f"{base.name}/{base.version}" if base else None,
            architecture=plan.architecture,
            parents=[base] if base else None,
            job_id=env.job_id,
            trace_id=env.trace_id,
            output=plan.output,
            preprocessing=plan.preprocessing,
        )
        return VersionRef(model.name, model.version, model.owner)

    async def _record(
        self,
        env: Envelope[TrainRequested],
        plan: Plan,
        trainer: Trainer,
        digest: str,
        sizes: tuple[int, int],
        metrics: dict[str, float],
        started: float,
        *,
        model: VersionRef | None,
        update: SiteUpdate | None,
    ) -> tuple[TrainingRun, ObjectRef]:
        """The run's record, what `GET /v1/runs/{run}` and `runs reproduce` read."""
        request, tenant, base = env.data, env.tenant, plan.base
        images, held = sizes
        run = TrainingRun(
            run=env.job_id,
            tenant=tenant,
            name=request.name,
            model=model,
            base=VersionRef(base.name, base.version, base.owner) if base else None,
            architecture=plan.architecture,
            dataset=request.dataset,
            dataset_sha256=digest,
            images=images,
            validation_images=held,
            hyperparameters=request.hyperparameters,
            evaluate_on=request.evaluate_on,
            experiment=request.experiment,
            reproduces=request.reproduces,
            curve=tuple(trainer.curve),
            train_loss=metrics["train_loss"],
            validation_miou=metrics.get("validation_miou"),
            code_version=CODE_VERSION,
            torch=str(torch.__version__),
            device=self.device.type,
            resumes=trainer.resumes,
            seconds=round(time.perf_counter() - started, 3),
            created=now(),
            request=request,
            update=update,
        )
        record = await self.store.put(keys.training_run(tenant, env.job_id), msgspec.json.encode(run), JSON)
        return run, record

    async def _finished(self, env: Envelope[TrainRequested], run: TrainingRun, record: ObjectRef) -> list[Envelope[Any]]:
        if run.update is not None and env.data.federation is not None:  # again on a redelivery: the same event
            await self.sites.submit(env.data.federation, run.update, env.trace_id)
        ref = run.model
        model = await self.registry.get(ref.owner or env.tenant, ref.name, ref.version) if ref is not None else None
        trained = train_v1.Trained(run=run, model=model, record=record)
        evaluation = followups.evaluation(env, SOURCE, model, env.data.evaluate_on) if model is not None else []
        return [*evaluation, next_event(env, train_v1.TRAINED, SOURCE, trained)]
