"""Ingest: `seg.v1.requested` → decode, validate, normalise, store → `seg.v1.ingested`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import msgspec

from maskline.contracts import seg_v1
from maskline.contracts.envelope import Envelope, next_event
from maskline.contracts.formats import PIXELS
from maskline.services.ingest.decode import InvalidImage, decode
from maskline.services.ingest.settings import IngestSettings
from maskline.shared import keys, references
from maskline.shared.errors import PermanentError
from maskline.shared.images.checks import ImageRefused, Limits, RequestTooLarge, check_pixel_budget, formats, open_checked
from maskline.shared.service.consumer import ConsumerSpec
from maskline.shared.service.runtime import Runtime

NAME = "ingest"


class Ingest:
    def __init__(self, runtime: Runtime, settings: IngestSettings) -> None:
        self.runtime = runtime
        allowed = formats(settings.allowed_formats)
        self.limits = Limits(allowed=allowed, max_pixels=settings.max_pixels, max_side=settings.max_side)
        self.settings = settings

    def _check_budget(self, width: int, height: int, options: seg_v1.SegmentationOptions) -> None:
        variants = len(options.tta.variants) if options.tta else 0
        s = self.settings
        try:
            check_pixel_budget(width, height, variants, s.working_max_side, s.max_request_pixels)
        except RequestTooLarge as exc:
            raise InvalidImage(str(exc), code=exc.code) from exc

    async def handle(self, env: Envelope[seg_v1.SegmentationRequested]) -> list[Envelope[seg_v1.SegmentationIngested]]:
        started = time.perf_counter()  # admitted by the runtime's command gate, whoever published it
        store = self.runtime.store
        raw = await references.read(store, env.data.image, env.tenant)
        try:
            width, height = open_checked(raw, self.limits).size
        except ImageRefused as exc:
            raise InvalidImage(str(exc), code=exc.code) from exc
        self._check_budget(width, height, env.data.options)
        image = await asyncio.to_thread(decode, raw, limits=self.limits, working_max_side=self.settings.working_max_side)
        prompts = env.data.options.prompts
        if prompts is not None and (reason := prompts.outside(image.width, image.height)) is not None:
            raise PermanentError(reason, code="invalid_prompt")  # a bus publisher's: the gateway refuses them at once
        kept_type = "image/jpeg" if image.original_format == "JPEG" else "image/png"
        ref = msgspec.structs.replace(env.data.image, content_type=kept_type)
        if image.png is not None:  # re-encoded; otherwise the upload already is the normalised image
            ref = await store.put(keys.normalised_image(env.tenant, env.job_id), image.png, "image/png")
        working = await store.put(keys.working_image(env.tenant, env.job_id), image.working, PIXELS)
        data = seg_v1.SegmentationIngested(
            image=ref,
            width=image.width,
            height=image.height,
            original_format=image.original_format,
            options=env.data.options,
            timings_ms={"ingest": round((time.perf_counter() - started) * 1000, 2)},
            working=working,
            working_width=image.working_width,
            working_height=image.working_height,
        )
        # With test-time augmentation the job detours through augment; without, augment never sees it.
        subject = seg_v1.INGESTED if env.data.options.tta is None else seg_v1.AUGMENT_REQUESTED
        return [next_event(env, subject, NAME, data)]


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    assert isinstance(runtime.settings, IngestSettings)
    ingest = Ingest(runtime, runtime.settings)
    runtime.consume(
        ConsumerSpec.for_subject(
            NAME, seg_v1.REQUESTED, ingest.handle, failure=seg_v1.FAILED, concurrency=runtime.settings.concurrency
        )
    )
    return []
