"""Merge: `seg.v1.inferred` → (fuse TTA variants) → mask PNG, overlay PNG, regions JSON → `seg.v1.completed`."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from maskline.contracts import model_v1, seg_v1
from maskline.contracts.common_v1 import ModelRef, ObjectRef, Variant
from maskline.contracts.envelope import Envelope, next_event
from maskline.services.merge import render
from maskline.services.merge.collect import VariantCollector
from maskline.services.merge.regions import Region, find_regions
from maskline.services.merge.rounds import Rounds
from maskline.services.merge.weights.job import merge_models
from maskline.shared import transforms
from maskline.shared.consumer import ConsumerSpec
from maskline.shared.errors import PermanentError, RetryableError
from maskline.shared.images import decode_rgb
from maskline.shared.registry import ModelRegistry
from maskline.shared.runtime import Runtime
from maskline.shared.storage import ObjectNotFound, ObjectStore, StorageError

NAME = "merge"
FILENAMES = {"mask": "mask.png", "overlay": "overlay.png", "regions": "regions.json"}


class RegionsDocument(msgspec.Struct, frozen=True, kw_only=True):
    """The regions JSON a client downloads."""

    job_id: str
    image: dict[str, int]
    model: ModelRef
    labels: tuple[str, ...]
    regions: list[Region]
    timings_ms: dict[str, float]
    variants: tuple[Variant, ...] = ()
    """TTA variants fused into the result, with their parameters."""


@dataclass(frozen=True)
class Rendered:
    files: dict[str, tuple[bytes, str]]
    regions: int


def load_probs(npy: bytes) -> NDArray[np.float32]:
    return np.asarray(np.load(io.BytesIO(npy), allow_pickle=False), dtype=np.float32)


def fuse_variants(parts: list[tuple[seg_v1.SegmentationInferred, bytes]]) -> NDArray[np.float32]:
    """Each variant's probabilities, resized to the variant's geometry, mapped back and fused."""
    first = parts[0][0]
    shape = (first.height, first.width)
    probs, valid = [], []
    for inferred, npy in parts:
        variant = inferred.variant or Variant(name="original")
        height, width = transforms.variant_shape(variant, shape)
        probs.append(np.asarray(transforms.invert(variant, render.upsample(load_probs(npy), width, height), shape)))
        valid.append(transforms.valid_region(variant, shape))
    fusion = first.options.tta.fusion if first.options.tta else "mean"
    return transforms.fuse(probs, valid, fusion)


def render_outputs(
    job_id: str, data: seg_v1.SegmentationInferred, png: bytes, probs_hwc: NDArray[np.float32], variants: tuple[Variant, ...]
) -> Rendered:
    mask, score = render.hard_mask(probs_hwc)
    regions = find_regions(mask, score, data.labels, data.options.min_region_area)
    files: dict[str, tuple[bytes, str]] = {}
    if "mask" in data.options.outputs:
        files["mask"] = (render.png(mask), "image/png")
    if "overlay" in data.options.outputs:
        image = decode_rgb(png)
        files["overlay"] = (render.png(render.overlay(image, mask, len(data.labels), data.options.overlay_alpha)), "image/png")
    if "regions" in data.options.outputs:
        doc = RegionsDocument(
            job_id=job_id,
            image={"width": data.width, "height": data.height},
            model=data.model,
            labels=data.labels,
            regions=regions,
            timings_ms=data.timings_ms,
            variants=variants,
        )
        files["regions"] = (msgspec.json.encode(doc), "application/json")
    return Rendered(files=files, regions=len(regions))


async def _get(store: ObjectStore, key: str) -> bytes:
    try:
        return await store.get(key)
    except ObjectNotFound as exc:
        raise PermanentError(f"input of job is missing: {exc}", code="input_missing") from exc
    except StorageError as exc:
        raise RetryableError(str(exc)) from exc


class Merge:
    def __init__(self, runtime: Runtime, collector: VariantCollector) -> None:
        self.runtime = runtime
        self.collector = collector

    async def handle(self, env: Envelope[seg_v1.SegmentationInferred]) -> list[Envelope[seg_v1.SegmentationCompleted]]:
        started = time.perf_counter()
        store = self.runtime.store
        data = env.data
        if data.variant is None:
            parts = [data]
        else:
            collected = await self.collector.record(env.job_id, data)
            if collected is None:
                return []  # more variants to come; this one is durably recorded
            parts = collected
        png, *npys = await asyncio.gather(_get(store, data.image.key), *(_get(store, p.prediction.key) for p in parts))
        try:
            if data.variant is None:
                probs = render.upsample(load_probs(npys[0]), data.width, data.height)
            else:
                probs = await asyncio.to_thread(fuse_variants, list(zip(parts, npys, strict=True)))
            variants = tuple(p.variant for p in parts if p.variant is not None)
            timings = {k: v for p in parts for k, v in p.timings_ms.items()}
            data = msgspec.structs.replace(data, timings_ms=timings)
            rendered = await asyncio.to_thread(render_outputs, env.job_id, data, png, probs, variants)
        except (ValueError, OSError) as exc:
            raise PermanentError(f"cannot render prediction: {exc}", code="bad_prediction") from exc
        artifacts: dict[str, ObjectRef] = {}
        try:
            for name, (body, content_type) in rendered.files.items():
                key = f"outputs/{env.tenant}/{env.job_id}/{FILENAMES[name]}"
                artifacts[name] = await store.put(key, body, content_type)
        except StorageError as exc:
            raise RetryableError(str(exc)) from exc
        completed = seg_v1.SegmentationCompleted(
            artifacts=artifacts,
            model=data.model,
            width=data.width,
            height=data.height,
            regions=rendered.regions,
            timings_ms={**timings, "merge": round((time.perf_counter() - started) * 1000, 2)},
            variants=variants,
        )
        return [next_event(env, seg_v1.COMPLETED, NAME, completed)]


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    collector = VariantCollector(runtime.bus.js)
    await collector.open(runtime.settings.stream_replicas)
    merge = Merge(runtime, collector)
    registry = ModelRegistry(runtime.bus.js)
    await registry.open(runtime.settings.stream_replicas)

    async def on_merge_models(env: Envelope[model_v1.ModelMergeRequested]) -> list[Envelope[Any]]:
        return list(await merge_models(runtime.store, registry, runtime.bus, env))

    rounds = Rounds(runtime.bus.js, runtime.bus, runtime.store, registry)
    await rounds.open(runtime.settings.stream_replicas)
    for durable, subject, payload, handler in (
        (f"{NAME}-rounds", model_v1.ROUND_OPENED, model_v1.RoundOpened, rounds.on_opened),
        (f"{NAME}-updates", model_v1.UPDATE_SUBMITTED, model_v1.SiteUpdate, rounds.on_update),
    ):
        runtime.consume(
            ConsumerSpec(
                durable=durable,
                stream="MODEL",
                subject=subject,
                payload=payload,
                handler=handler,
                failure_subject=None,
                concurrency=1,
            )
        )
    runtime.consume(
        ConsumerSpec(
            durable=f"{NAME}-models",
            stream="MODEL",
            subject=model_v1.MERGE_REQUESTED,
            payload=model_v1.ModelMergeRequested,
            handler=on_merge_models,
            failure_subject=model_v1.FAILED,
            concurrency=1,
        )
    )
    runtime.consume(
        ConsumerSpec(
            durable=NAME,
            stream="SEG",
            subject=seg_v1.INFERRED,
            payload=seg_v1.SegmentationInferred,
            handler=merge.handle,
            failure_subject=seg_v1.FAILED,
            concurrency=runtime.settings.concurrency,
        )
    )
    return [rounds.watch_deadlines(runtime.stopping)]
