"""Infer: `seg.v1.ingested` → resize, run the model version on Triton, store probabilities → `seg.v1.inferred`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import numpy as np
import structlog

from maskline.contracts import seg_v1
from maskline.contracts.common_v1 import ModelRef
from maskline.contracts.envelope import Envelope, next_event
from maskline.contracts.model_v1 import ModelVersion
from maskline.services.infer.preprocess import encode_npy, to_model_input
from maskline.services.infer.settings import InferSettings
from maskline.services.infer.triton import Triton
from maskline.shared.consumer import ConsumerSpec
from maskline.shared.errors import PermanentError, RetryableError
from maskline.shared.registry import ModelNotFound, ModelRegistry
from maskline.shared.runtime import Runtime
from maskline.shared.storage import ObjectNotFound, StorageError

NAME = "infer"
log = structlog.get_logger(NAME)
LATEST_TTL_S = 5.0


class Infer:
    def __init__(self, runtime: Runtime, triton: Triton, registry: ModelRegistry) -> None:
        self.runtime = runtime
        self.triton = triton
        self.registry = registry
        self._warm_done = False
        self._models: dict[tuple[str, int | None], tuple[float, ModelVersion]] = {}

    async def resolve(self, name: str, version: int | None) -> ModelVersion:
        """Versions are immutable, so a pinned version is cached for good; "latest" for a few seconds."""
        key = (name, version)
        cached = self._models.get(key)
        if cached is not None and (version is not None or time.monotonic() - cached[0] < LATEST_TTL_S):
            return cached[1]
        try:
            model = await self.registry.get(name, version)
        except ModelNotFound as exc:
            raise PermanentError(str(exc), code="model_not_found") from exc
        self._models[key] = (time.monotonic(), model)
        return model

    async def warm(self, names: list[str]) -> None:
        """Load the newest version of each named model; readiness waits for it."""
        for name in names:
            for attempt in range(60):
                try:
                    model = await self.registry.get(name)
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

    async def handle(self, env: Envelope[seg_v1.SegmentationIngested]) -> list[Envelope[seg_v1.SegmentationInferred]]:
        started = time.perf_counter()
        options = env.data.options
        model = await self.resolve(options.model, options.version)
        try:
            png = await self.runtime.store.get(env.data.image.key)
        except ObjectNotFound as exc:
            raise PermanentError(f"ingested image {env.data.image.key} is missing", code="input_missing") from exc
        except StorageError as exc:
            raise RetryableError(str(exc)) from exc
        batch = await asyncio.to_thread(to_model_input, png, model.input_size)
        await self.triton.ensure_loaded(model)
        triton_started = time.perf_counter()
        probs = await self.triton.infer(model, batch)
        triton_ms = (time.perf_counter() - triton_started) * 1000
        if probs.ndim != 4 or probs.shape[1] != len(model.labels):
            raise PermanentError(
                f"model returned shape {probs.shape}, expected (1, {len(model.labels)}, h, w)", code="bad_model_output"
            )
        key = f"outputs/{env.tenant}/{env.job_id}/probs.npy"
        try:
            ref = await self.runtime.store.put(key, encode_npy(probs[0]), "application/x-npy")
        except StorageError as exc:
            raise RetryableError(str(exc)) from exc
        data = seg_v1.SegmentationInferred(
            image=env.data.image,
            width=env.data.width,
            height=env.data.height,
            prediction=ref,
            model=ModelRef(name=model.name, version=model.version, precision=model.precision),
            labels=model.labels,
            options=options,
            timings_ms={
                **env.data.timings_ms,
                "infer": round((time.perf_counter() - started) * 1000, 2),
                "triton": round(triton_ms, 2),
            },
        )
        return [next_event(env, seg_v1.INFERRED, NAME, data)]


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    settings = runtime.settings
    assert isinstance(settings, InferSettings)
    registry = ModelRegistry(runtime.bus.js)
    await registry.open(settings.stream_replicas)
    triton = Triton(settings, runtime.store)
    runtime.ready_checks["triton"] = triton.ready
    infer = Infer(runtime, triton, registry)
    runtime.ready_checks["models"] = infer.warm_ready
    runtime.consume(
        ConsumerSpec(
            durable=NAME,
            stream="SEG",
            subject=seg_v1.INGESTED,
            payload=seg_v1.SegmentationIngested,
            handler=infer.handle,
            failure_subject=seg_v1.FAILED,
            concurrency=settings.concurrency,
        )
    )
    return [infer.warm([m.strip() for m in settings.warm_models.split(",") if m.strip()])]
