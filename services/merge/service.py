"""Merge (render): `seg.v1.inferred` → mask PNG, overlay PNG, regions JSON → `seg.v1.completed`."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import msgspec
import numpy as np
from PIL import Image

from maskline.contracts import seg_v1
from maskline.contracts.common_v1 import ModelRef, ObjectRef
from maskline.contracts.envelope import Envelope, next_event
from maskline.services.merge import render
from maskline.services.merge.regions import Region, find_regions
from maskline.shared.consumer import ConsumerSpec
from maskline.shared.errors import PermanentError, RetryableError
from maskline.shared.runtime import Runtime
from maskline.shared.storage import ObjectNotFound, StorageError

NAME = "merge"


class RegionsDocument(msgspec.Struct, frozen=True, kw_only=True):
    """The regions JSON a client downloads."""

    job_id: str
    image: dict[str, int]
    model: ModelRef
    labels: tuple[str, ...]
    regions: list[Region]
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Rendered:
    files: dict[str, tuple[bytes, str]]
    regions: int


def render_outputs(env: Envelope[seg_v1.SegmentationInferred], png: bytes, npy: bytes) -> Rendered:
    data = env.data
    probs = np.load(io.BytesIO(npy), allow_pickle=False)
    probs_hwc = render.upsample(probs, data.width, data.height)
    mask, score = render.hard_mask(probs_hwc)
    regions = find_regions(mask, score, data.labels, data.options.min_region_area)
    files: dict[str, tuple[bytes, str]] = {}
    if "mask" in data.options.outputs:
        files["mask"] = (render.png(mask), "image/png")
    if "overlay" in data.options.outputs:
        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        files["overlay"] = (render.png(render.overlay(image, mask, len(data.labels), data.options.overlay_alpha)), "image/png")
    if "regions" in data.options.outputs:
        doc = RegionsDocument(
            job_id=env.job_id,
            image={"width": data.width, "height": data.height},
            model=data.model,
            labels=data.labels,
            regions=regions,
            timings_ms=data.timings_ms,
        )
        files["regions"] = (msgspec.json.encode(doc), "application/json")
    return Rendered(files=files, regions=len(regions))


FILENAMES = {"mask": "mask.png", "overlay": "overlay.png", "regions": "regions.json"}


class Merge:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def handle(self, env: Envelope[seg_v1.SegmentationInferred]) -> list[Envelope[seg_v1.SegmentationCompleted]]:
        started = time.perf_counter()
        store = self.runtime.store
        try:
            png, npy = await asyncio.gather(store.get(env.data.image.key), store.get(env.data.prediction.key))
        except ObjectNotFound as exc:
            raise PermanentError(f"input of job is missing: {exc}", code="input_missing") from exc
        except StorageError as exc:
            raise RetryableError(str(exc)) from exc
        try:
            rendered = await asyncio.to_thread(render_outputs, env, png, npy)
        except (ValueError, OSError) as exc:
            raise PermanentError(f"cannot render prediction: {exc}", code="bad_prediction") from exc
        artifacts: dict[str, ObjectRef] = {}
        try:
            for name, (body, content_type) in rendered.files.items():
                key = f"outputs/{env.tenant}/{env.job_id}/{FILENAMES[name]}"
                artifacts[name] = await store.put(key, body, content_type)
        except StorageError as exc:
            raise RetryableError(str(exc)) from exc
        data = seg_v1.SegmentationCompleted(
            artifacts=artifacts,
            model=env.data.model,
            width=env.data.width,
            height=env.data.height,
            regions=rendered.regions,
            timings_ms={**env.data.timings_ms, "merge": round((time.perf_counter() - started) * 1000, 2)},
        )
        return [next_event(env, seg_v1.COMPLETED, NAME, data)]


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    merge = Merge(runtime)
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
    return []
