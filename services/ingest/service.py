"""Ingest: `seg.v1.requested` → decode, validate, normalise, store → `seg.v1.ingested`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import msgspec

from maskline.contracts import seg_v1
from maskline.contracts.envelope import Envelope, next_event
from maskline.services.ingest.decode import decode
from maskline.services.ingest.settings import IngestSettings
from maskline.shared.consumer import ConsumerSpec
from maskline.shared.errors import PermanentError, RetryableError
from maskline.shared.runtime import Runtime
from maskline.shared.storage import ObjectNotFound, StorageError

NAME = "ingest"


def input_key(tenant: str, job_id: str, name: str) -> str:
    return f"inputs/{tenant}/{job_id}/{name}"


class Ingest:
    def __init__(self, runtime: Runtime, settings: IngestSettings) -> None:
        self.runtime = runtime
        self.formats = frozenset(f.strip().upper() for f in settings.allowed_formats.split(",") if f.strip())
        self.settings = settings

    async def handle(self, env: Envelope[seg_v1.SegmentationRequested]) -> list[Envelope[seg_v1.SegmentationIngested]]:
        started = time.perf_counter()
        store = self.runtime.store
        try:
            raw = await store.get(env.data.image.key)
        except ObjectNotFound as exc:
            raise PermanentError(f"input object {env.data.image.key} does not exist", code="input_missing") from exc
        except StorageError as exc:
            raise RetryableError(str(exc)) from exc
        s = self.settings
        image = await asyncio.to_thread(decode, raw, allowed_formats=self.formats, max_pixels=s.max_pixels, max_side=s.max_side)
        ref = msgspec.structs.replace(env.data.image, content_type="image/png")
        if image.png is not None:  # re-encoded; otherwise the upload already is the normalised image
            try:
                ref = await store.put(input_key(env.tenant, env.job_id, "image.png"), image.png, "image/png")
            except StorageError as exc:
                raise RetryableError(str(exc)) from exc
        data = seg_v1.SegmentationIngested(
            image=ref,
            width=image.width,
            height=image.height,
            original_format=image.original_format,
            options=env.data.options,
            timings_ms={"ingest": round((time.perf_counter() - started) * 1000, 2)},
        )
        # With test-time augmentation the job detours through augment; without, augment never sees it.
        subject = seg_v1.INGESTED if env.data.options.tta is None else seg_v1.AUGMENT_REQUESTED
        return [next_event(env, subject, NAME, data)]


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    assert isinstance(runtime.settings, IngestSettings)
    ingest = Ingest(runtime, runtime.settings)
    runtime.consume(
        ConsumerSpec(
            durable=NAME,
            stream="SEG",
            subject=seg_v1.REQUESTED,
            payload=seg_v1.SegmentationRequested,
            handler=ingest.handle,
            failure_subject=seg_v1.FAILED,
            concurrency=runtime.settings.concurrency,
        )
    )
    return []
