"""Handing an image over for segmentation: the cheap checks that answer at once, and the job's
start (admission, storage, the bus). Every route that starts segmentation jobs goes through here:
`POST /v1/segmentations`, the Open Inference Protocol, Label Studio's predict."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from maskline.contracts import seg_v1
from maskline.contracts.envelope import command, now
from maskline.services.gateway.core.errors import PayloadTooLarge, Unprocessable
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.segmentations import sniff
from maskline.services.gateway.segmentations.sniff import Header, check_image_header
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared import keys, tracing
from maskline.shared.bus import Bus
from maskline.shared.images.checks import RequestTooLarge, check_pixel_budget, formats
from maskline.shared.jobs.state import JobState, JobStore

SOURCE = "gateway"
#: What `check_upload` refuses an image with.
UPLOAD_REFUSALS = sniff.REFUSALS + PayloadTooLarge.coded(RequestTooLarge.code)


def check_prompts(prompts: seg_v1.Prompts, width: int, height: int) -> None:
    """Every box and point within the (upright) image."""
    reason = prompts.outside(width, height)
    if reason is not None:
        raise Unprocessable(reason, code="invalid_prompt")


async def check_upload(settings: GatewaySettings, body: bytes, options: seg_v1.SegmentationOptions | None = None) -> Header:
    """The image header, after the cheap checks (type, pixel count, the request's pixel budget) that answer at once."""
    allowed = formats(settings.allowed_formats)
    header = await asyncio.to_thread(check_image_header, body, allowed_formats=allowed, max_pixels=settings.max_pixels)
    variants = len(options.tta.variants) if options is not None and options.tta else 0
    try:
        check_pixel_budget(header.width, header.height, variants, settings.working_max_side, settings.max_request_pixels)
    except RequestTooLarge as exc:
        raise PayloadTooLarge(str(exc), code=exc.code) from exc
    return header


@dataclass(frozen=True)
class Upload:
    """An image handed over for segmentation (from a form, or an Open Inference Protocol request)."""

    body: bytes
    sha256: str
    filename: str | None
    content_type: str
    deadline_s: float | None = None


@dataclass(frozen=True)
class SegmentationJobs:
    """Start a segmentation job: what a handler asks for as `segmentation_jobs`, built by litestar
    from the parts of the same names (app.py)."""

    intake: Intake
    store: Store
    bus: Bus
    job_store: JobStore

    async def start(self, tenant: str, job_id: str, upload: Upload, options: seg_v1.SegmentationOptions) -> JobState:
        """Admit the job (429 / 503 at once when over a limit: nothing stored yet), store the upload
        (content-addressed: never overwritten), publish the request, then record it. A refusal or a
        failure on the way gives the admission back."""
        try:
            await self.intake.admit(tenant, job_id, options.inferences)
            key = keys.job_upload(tenant, job_id, upload.sha256)
            ref = await self.store.put(key, upload.body, upload.content_type, upload.sha256)
            request = seg_v1.SegmentationRequested(image=ref, options=options, filename=upload.filename)
            deadline = now() + timedelta(seconds=upload.deadline_s) if upload.deadline_s else None
            trace_id = tracing.current_trace_id()  # the request's own trace (its traceparent) becomes the job's
            env = command(seg_v1.REQUESTED, SOURCE, request, tenant=tenant, job_id=job_id, deadline=deadline, trace_id=trace_id)
            # Published first: if the bus refuses, no job state is left behind to wait forever.
            await self.bus.publish(env)
            return await self.job_store.apply(env)
        except BaseException:
            self.intake.finished(tenant, job_id)
            raise
