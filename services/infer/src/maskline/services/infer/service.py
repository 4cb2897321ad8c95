"""Infer: `seg.v1.ingested` → resize, run the model version on Triton, store probabilities → `seg.v1.inferred`."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from maskline.contracts import formats, model_v1, seg_v1
from maskline.contracts.common_v1 import ModelRef, ObjectRef
from maskline.contracts.envelope import Envelope, next_event
from maskline.contracts.model_v1 import ModelVersion, ShadowCompared
from maskline.contracts.subjects import PLATFORM_TENANT
from maskline.services.infer.embeddings import Embeddings
from maskline.services.infer.evaluate import Evaluator
from maskline.services.infer.prompted import PromptedJobs, model_ref
from maskline.services.infer.settings import InferSettings
from maskline.services.infer.triton import Triton, TritonBudgetMetrics
from maskline.shared import keys, references
from maskline.shared.errors import HandlerError, PermanentError
from maskline.shared.images import statistics
from maskline.shared.images.codec import encode_probabilities, load_bgr, prepare_pixels, stitch
from maskline.shared.models.access import Grants, ModelAccess, Target
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.shadows import ShadowTallies, agreement
from maskline.shared.service.consumer import ConsumerSpec
from maskline.shared.service.runtime import Runtime

NAME = "infer"
log = structlog.get_logger(NAME)
LATEST_TTL_S = 5.0
#: A shadow that takes longer than this is dropped: it must never hold up the served result.
SHADOW_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Prediction:
    ref: ObjectRef
    model: ModelVersion
    timings_ms: dict[str, float]
    alias: str | None
    canary: bool
    shadow: ShadowCompared | None = None
    brightness: float | None = None

    @property
    def model_ref(self) -> ModelRef:
        return model_ref(self.model, self.alias, self.canary)


class Infer:
    def __init__(self, runtime: Runtime, triton: Triton, access: ModelAccess, shadows: ShadowTallies) -> None:
        self.runtime = runtime
        self.triton = triton
        self.access = access
        self.shadows = shadows
        self._warm_done = False
        settings = runtime.settings
        assert isinstance(settings, InferSettings)
        embeddings = Embeddings(settings.embedding_cache_mb << 20, settings.embedding_ttl_s)
        self.prompted = PromptedJobs(self, embeddings)
        self.pinned_aliases = tuple(a.strip() for a in settings.triton_pinned_aliases.split(",") if a.strip())
        triton.is_pinned = self.served_by_pinned_alias
        self._targets: dict[tuple[str, str | None, str, int | None, str | None, str | None], tuple[float, Target]] = {}

    async def served_by_pinned_alias(self, triton_model: str, version: int) -> bool:
        """Whether an alias that `triton_pinned_aliases` names (`owner/model/alias` patterns) serves
        this version (as its version, canary or shadow): the memory budget never unloads it."""
        owner, _, name = triton_model.partition(".")
        if not name or not any(fnmatch.fnmatchcase(f"{owner}/{name}/", p.rsplit("/", 1)[0] + "/") for p in self.pinned_aliases):
            return False  # no pattern names this model: no registry read
        aliases = await self.access.registry.aliases(owner, name)
        return any(
            version in (a.version, a.canary, a.shadow)
            and any(fnmatch.fnmatchcase(f"{owner}/{name}/{a.name}", p) for p in self.pinned_aliases)
            for a in aliases
        )

    async def target(self, tenant: str, options: seg_v1.SegmentationOptions) -> Target:
        """What this tenant's request runs, if the tenant may use it. Cached for a few seconds
        (a promotion, a rollback or a revoked grant takes effect within `LATEST_TTL_S`)."""
        key = (tenant, options.owner, options.model, options.version, options.precision, options.alias)
        cached = self._targets.get(key)
        if cached is not None and time.monotonic() - cached[0] < LATEST_TTL_S:
            return cached[1]
        try:
            target = await self.access.target(
                tenant,
                options.model,
                owner=options.owner,
                version=options.version,
                precision=options.precision,
                alias=options.alias,
            )
        except ModelNotFound as exc:
            raise PermanentError(str(exc), code="model_not_found") from exc
        self._targets[key] = (time.monotonic(), target)
        return target

    async def warm(self, names: list[str]) -> None:
        """Load the platform's released version of each named model; readiness waits for it."""
        for name in names:
            for attempt in range(60):
                try:
                    model = (await self.access.target(PLATFORM_TENANT, name)).model
                    await self.triton.ensure_loaded(model)
                    # TorchScript optimises on its first calls: pay that here, not on a client's request.
                    height, width = model.input_size
                    for _ in range(3):
                        await self.triton.infer(model, np.zeros((1, 3, height, width), dtype=np.float32))
                    break
                except Exception as exc:  # Triton may still be starting: try again
                    log.warning("model.warm_failed", model=name, attempt=attempt, error=str(exc))
                    await asyncio.sleep(1.0)
        self._warm_done = True

    async def warm_ready(self) -> bool:
        return self._warm_done

    async def scores(self, model: ModelVersion, image: bytes, content_type: str = "image/png") -> NDArray[np.floating[Any]]:
        """C x H x W class scores of the image's own part (letterbox cropped, tiles stitched)."""
        return (await self.timed_scores(model, image, content_type))[0]

    async def timed_scores(
        self, model: ModelVersion, image: bytes, content_type: str = "image/png"
    ) -> tuple[NDArray[np.floating[Any]], float]:
        """`scores`, and the milliseconds Triton took (the model call alone). `image`: stored pixels
        (`formats.PIXELS`, read as they are) or an encoded image."""
        inside, triton_ms, _ = await self.loaded_scores(model, image, content_type)
        return inside, triton_ms

    async def loaded_scores(
        self, model: ModelVersion, image: bytes, content_type: str = "image/png"
    ) -> tuple[NDArray[np.floating[Any]], float, float]:
        """`timed_scores`, and the milliseconds spent loading the version into Triton first (0 when
        it was loaded): the extra latency of a version the memory budget had unloaded."""
        if model.decoder is not None:
            raise PermanentError(
                f"{model.name}/{model.version} is a SAM-format model: it answers prompts (give prompts)", code="prompts_required"
            )
        prepared = await asyncio.to_thread(prepare_pixels, image, content_type, model.input_size, model.preprocessing)
        async with self.triton.using(model):  # not unloaded for another version while this request runs
            load_s = await self.triton.ensure_loaded(model)
            triton_started = time.perf_counter()
            probs = await self.triton.infer(model, prepared.batch)
            triton_ms = (time.perf_counter() - triton_started) * 1000
        expected = (prepared.batch.shape[0], len(model.labels), *prepared.batch.shape[2:])
        if probs.shape != expected:
            raise PermanentError(f"model returned shape {probs.shape}, expected {expected}", code="bad_model_output")
        # letterboxed: only the image's part, in its own aspect (a view); tiles: stitched at native
        # resolution, in a thread (a large image's canvas)
        inside = await asyncio.to_thread(stitch, prepared, probs) if prepared.tiles else stitch(prepared, probs)
        return inside, triton_ms, load_s * 1000

    async def _predict(
        self,
        env: Envelope[Any],
        options: seg_v1.SegmentationOptions,
        image: ObjectRef,
        prediction_key: str,
        *,
        shadow: bool = False,
    ) -> Prediction:
        """Run the version this job resolves to on one stored image; store float16 probabilities.
        With `shadow` and an alias that has one, also run the shadow version and compare."""
        started = time.perf_counter()
        target = await self.target(env.tenant, options)
        model, canary = target.pick(env.job_id)
        pixels = await references.read(self.runtime.store, image, env.tenant)
        try:
            inside, triton_ms, load_ms = await self.loaded_scores(model, pixels, image.content_type)
        except HandlerError as exc:  # the failed-job event names the version (its error rate counts it)
            exc.model = model_ref(model, target.alias.name if target.alias else None, canary)
            raise
        ref = await self.runtime.store.put(prediction_key, encode_probabilities(inside), formats.PROBABILITIES)
        timings = {"infer": round((time.perf_counter() - started) * 1000, 2), "triton": round(triton_ms, 2)}
        if load_ms:  # the version had to be loaded (first use, or unloaded by the memory budget)
            timings["load"] = round(load_ms, 2)
        compared = None
        if shadow and target.shadow is not None and target.alias is not None:
            compared = await self._shadow(env.tenant, target, model, pixels, image.content_type, inside, triton_ms)
        alias = target.alias.name if target.alias else None
        # Stored pixels (every working copy since 1.8) are read without decoding: a few microseconds.
        light = statistics.brightness(load_bgr(pixels, formats.PIXELS)) if image.content_type == formats.PIXELS else None
        return Prediction(ref=ref, model=model, timings_ms=timings, alias=alias, canary=canary, shadow=compared, brightness=light)

    async def _shadow(
        self,
        tenant: str,
        target: Target,
        served: ModelVersion,
        image: bytes,
        content_type: str,
        scores: NDArray[np.floating[Any]],
        served_ms: float,
    ) -> ShadowCompared | None:
        """The shadow's mask compared with the served one; never fails or holds up the job."""
        assert target.shadow is not None and target.alias is not None
        started = time.perf_counter()
        try:
            other = await asyncio.wait_for(self.scores(target.shadow, image, content_type), SHADOW_TIMEOUT_S)
            pixels, miou = await asyncio.to_thread(agreement, scores, other)
            compared = ShadowCompared(
                owner=target.alias.owner,
                model=target.alias.model,
                alias=target.alias.name,
                served=served.version,
                shadow=target.shadow.version,
                pixel_agreement=round(pixels, 6),
                miou=round(miou, 6),
                served_ms=round(served_ms, 2),
                shadow_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            await self.shadows.add(compared, tenant)
            return compared
        except Exception as exc:  # a broken or slow shadow is the owner's finding, not the client's failure
            log.warning("shadow.failed", model=target.alias.model, shadow=target.shadow.version, error=str(exc))
            return None

    async def handle(self, env: Envelope[seg_v1.SegmentationIngested]) -> list[Envelope[Any]]:
        d = env.data
        if d.options.prompts is not None:
            return [next_event(env, seg_v1.INFERRED, NAME, await self.prompted.handle(env))]
        # The working copy when the image is large: the model sees a few hundred pixels per side anyway.
        p = await self._predict(env, d.options, d.work_ref, keys.prediction(env.tenant, env.job_id), shadow=True)
        data = seg_v1.SegmentationInferred(
            image=d.full_size_pixels,  # what merge draws the overlay on: pixels, when the working copy is full size
            width=d.width,
            height=d.height,
            prediction=p.ref,
            model=p.model_ref,
            labels=p.model.labels,
            options=d.options,
            timings_ms={**d.timings_ms, **p.timings_ms},
            brightness=p.brightness,
        )
        events: list[Envelope[Any]] = [next_event(env, seg_v1.INFERRED, NAME, data)]
        if p.shadow is not None:  # in the job's audit trail, and for anyone watching the rollout
            events.append(next_event(env, model_v1.SHADOW_COMPARED, NAME, p.shadow))
        return events

    async def handle_variant(self, env: Envelope[seg_v1.SegmentationAugmented]) -> list[Envelope[seg_v1.SegmentationInferred]]:
        d = env.data
        key = keys.variant_prediction(env.tenant, env.job_id, d.index, d.variant.name)
        p = await self._predict(env, d.options, d.image, key)
        data = seg_v1.SegmentationInferred(
            image=d.original,
            width=d.original_width,
            height=d.original_height,
            prediction=p.ref,
            model=p.model_ref,
            labels=p.model.labels,
            options=d.options,
            variant=d.variant,
            variant_index=d.index,
            variant_count=d.count,
            working_width=d.working_width,
            working_height=d.working_height,
            timings_ms={**d.timings_ms, **{f"{k}[{d.variant.name}]": v for k, v in p.timings_ms.items()}},
            brightness=p.brightness,
        )
        return [next_event(env, seg_v1.INFERRED, NAME, data, part=d.index)]


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    settings = runtime.settings
    assert isinstance(settings, InferSettings)
    registry = await ModelRegistry.opened(runtime.bus.js)
    grants = await Grants.opened(runtime.bus.js)
    triton = Triton(settings, runtime.store)
    runtime.ready_checks["triton"] = triton.ready
    runtime.status_parts["triton"] = triton.report
    runtime.collectors.append(TritonBudgetMetrics(triton))
    shadows = await ShadowTallies.opened(runtime.bus.js)
    infer = Infer(runtime, triton, ModelAccess(registry, grants), shadows)
    runtime.ready_checks["models"] = infer.warm_ready
    for type_, handler in ((seg_v1.INGESTED, infer.handle), (seg_v1.AUGMENTED, infer.handle_variant)):
        runtime.consume(ConsumerSpec.for_subject(NAME, type_, handler, failure=seg_v1.FAILED, concurrency=settings.concurrency))
    evaluator = Evaluator(infer)
    runtime.consume(
        ConsumerSpec.for_subject(NAME, model_v1.EVALUATE_REQUESTED, evaluator.handle, failure=model_v1.FAILED, concurrency=1)
    )
    return [infer.warm([m.strip() for m in settings.warm_models.split(",") if m.strip()])]
