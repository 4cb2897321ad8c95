"""`/v1/segmentations`: submit an image, follow the job, download its artifacts."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from maskline.contracts import seg_v1
from maskline.contracts.envelope import Envelope, new_trace_id, now
from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.errors import NotFound, Unprocessable
from maskline.services.gateway.sniff import check_image_header
from maskline.services.gateway.views import SegmentationView, job_path, segmentation_view
from maskline.shared.jobs import JobState
from maskline.shared.storage import ObjectNotFound

SOURCE = "gateway"


@dataclass
class SegmentationForm:
    """multipart/form-data body of `POST /v1/segmentations`."""

    image: UploadFile
    model: str = "shapes-unet"
    version: int | None = None
    precision: str | None = None
    """fp32, hybrid or int8: the newest version in that precision (or check the pinned version has it)."""
    outputs: str = "mask,overlay,regions"
    overlay_alpha: float = 0.5
    min_region_area: int = 0
    tta: bool = False
    """Test-time augmentation: segment the variants, map back and fuse."""
    tta_variants: str = "original,rotate,blur,flip,flop"
    tta_angle: float = 15.0
    tta_blur_sigma: float = 1.0
    tta_fusion: str = "mean"


def parse_options(form: SegmentationForm) -> seg_v1.SegmentationOptions:
    outputs = tuple(o.strip() for o in form.outputs.split(",") if o.strip())
    tta = None
    if form.tta:
        tta = {
            "variants": tuple(v.strip() for v in form.tta_variants.split(",") if v.strip()),
            "angle": form.tta_angle,
            "blur_sigma": form.tta_blur_sigma,
            "fusion": form.tta_fusion,
        }
    raw = {
        "tta": tta,
        "model": form.model,
        "version": form.version,
        "precision": form.precision or None,
        "outputs": outputs,
        "overlay_alpha": form.overlay_alpha,
        "min_region_area": form.min_region_area,
    }
    try:
        return msgspec.convert(raw, seg_v1.SegmentationOptions)
    except msgspec.ValidationError as exc:
        raise Unprocessable(f"invalid options: {exc}", code="invalid_options") from exc


def make_job_id(tenant: str, idempotency_key: str | None) -> str:
    if idempotency_key:
        return hashlib.sha256(f"{tenant}\x00{idempotency_key}".encode()).hexdigest()[:32]
    return uuid.uuid4().hex


async def owned_job(ctx: GatewayContext, tenant: str, job_id: str) -> JobState:
    state = await ctx.jobs.get(job_id) if len(job_id) <= 128 else None
    if state is None or state.tenant != tenant:
        raise NotFound(f"no segmentation {job_id}")
    return state


class SegmentationController(Controller):
    path = "/v1/segmentations"
    tags = ["segmentations"]

    @post(status_code=HTTP_202_ACCEPTED, summary="Submit an image for segmentation")
    async def submit(
        self,
        ctx: GatewayContext,
        tenant: str,
        data: Annotated[SegmentationForm, Body(media_type=RequestEncodingType.MULTI_PART)],
        wait: Annotated[
            float,
            Parameter(query="wait", ge=0, default=0.0, description="Seconds to wait for the result (0: answer 202 at once)"),
        ] = 0.0,
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key")] = None,
    ) -> Response[SegmentationView]:
        options = parse_options(data)
        body = await data.image.read()
        s = ctx.settings
        formats = frozenset(f.strip().upper() for f in s.allowed_formats.split(","))
        await asyncio.to_thread(check_image_header, body, allowed_formats=formats, max_pixels=s.max_pixels)
        job_id = make_job_id(tenant, idempotency_key)
        existing = await ctx.jobs.get(job_id)
        if existing is None:
            ref = await ctx.runtime.store.put(f"inputs/{tenant}/{job_id}/upload", body, data.image.content_type)
            env = Envelope(
                id=f"{job_id}:{seg_v1.REQUESTED}",
                type=seg_v1.REQUESTED,
                time=now(),
                source=SOURCE,
                tenant=tenant,
                job_id=job_id,
                trace_id=new_trace_id(),
                data=seg_v1.SegmentationRequested(image=ref, options=options, filename=data.image.filename),
            )
            state = await ctx.jobs.apply(env)
            await ctx.runtime.bus.publish(env)
        else:
            state = existing
        if wait > 0 and not state.finished:
            state = await ctx.waiters.wait(job_id, min(wait, s.max_wait_s)) or state
        if state.status == "failed" and state.error is not None:
            raise Unprocessable(
                f"segmentation {job_id} failed in {state.error.stage}: {state.error.reason}", code=state.error.code
            )
        status = HTTP_200_OK if state.finished else HTTP_202_ACCEPTED
        return Response(segmentation_view(state), status_code=status, headers={"Location": job_path(job_id)})

    @get("/{job_id:str}", summary="Status, timings and links of a segmentation")
    async def status(self, ctx: GatewayContext, tenant: str, job_id: str) -> SegmentationView:
        return segmentation_view(await owned_job(ctx, tenant, job_id))

    @get("/{job_id:str}/{artifact:str}", summary="Download an artifact: mask, overlay or regions")
    async def artifact(self, ctx: GatewayContext, tenant: str, job_id: str, artifact: str) -> Response[bytes]:
        state = await owned_job(ctx, tenant, job_id)
        ref = state.artifacts.get(artifact)
        if ref is None:
            raise NotFound(f"segmentation {job_id} has no artifact {artifact!r} (status {state.status})")
        try:
            body = await ctx.runtime.store.get(ref.key)
        except ObjectNotFound as exc:
            raise NotFound(f"artifact {artifact} of {job_id} is gone from storage") from exc
        return Response(body, media_type=ref.content_type, headers={"ETag": f'"{ref.sha256}"'})
