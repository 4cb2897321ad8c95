"""`/v1/datasets`: upload a tenant's images (and masks), expand them with the five-way augmentation."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.status_codes import HTTP_202_ACCEPTED

from maskline.contracts import dataset_v1
from maskline.contracts.common_v1 import ALL_VARIANTS, VariantName
from maskline.contracts.envelope import Envelope, new_trace_id, now
from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.errors import NotFound, Unprocessable
from maskline.services.gateway.sniff import check_image_header
from maskline.shared.jobs import JobState

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class ExpandRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    target: str | None = None
    """Name of the expanded dataset; default `<name>-aug`."""
    variants: tuple[VariantName, ...] = ALL_VARIANTS
    angle: float = 15.0
    blur_sigma: float = 1.0


class DatasetView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    images: list[str]
    masks: list[str]
    manifest: bool


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    status: str
    progress: dict[str, int]
    error: dict[str, str] | None
    links: dict[str, str]


def checked_name(value: str, what: str) -> str:
    if not NAME.match(value) or value in (".", ".."):
        raise Unprocessable(f"{what} {value!r} must match [A-Za-z0-9_.-]{{1,128}}", code="invalid_name")
    return value


def prefix(tenant: str, dataset: str) -> str:
    return f"datasets/{tenant}/{checked_name(dataset, 'dataset name')}/"


def job_view(state: JobState) -> JobView:
    error = msgspec.structs.asdict(state.error) if state.error else None
    links = {"self": f"/v1/jobs/{state.job_id}", "audit": f"/v1/audit?job={state.job_id}"}
    if state.model is not None:
        links["model"] = f"/v1/models/{state.model.name}/{state.model.version}"
    if state.dataset is not None:
        links["dataset"] = "/v1/datasets/" + state.dataset.target.rstrip("/").rsplit("/", 1)[-1]
    return JobView(id=state.job_id, kind=state.kind, status=state.status, progress=state.progress, error=error, links=links)


class DatasetController(Controller):
    path = "/v1"
    tags = ["datasets"]

    @put("/datasets/{dataset:str}/{part:str}/{filename:str}", summary="Upload one image (part=images) or mask (part=masks)")
    async def upload(
        self, ctx: GatewayContext, tenant: str, dataset: str, part: str, filename: str, request: Request[Any, Any, Any]
    ) -> dict[str, Any]:
        if part not in ("images", "masks"):
            raise NotFound(f"no such dataset part {part!r}: use images or masks")
        body = await request.body()
        s = ctx.settings
        formats = frozenset(f.strip().upper() for f in s.allowed_formats.split(","))
        await asyncio.to_thread(check_image_header, body, allowed_formats=formats, max_pixels=s.max_pixels)
        key = prefix(tenant, dataset) + f"{part}/{checked_name(filename, 'file name')}"
        ref = await ctx.runtime.store.put(key, body, request.headers.get("content-type", "application/octet-stream"))
        return {"key": ref.key, "size": ref.size, "sha256": ref.sha256}

    @get("/datasets/{dataset:str}", summary="Files of a dataset")
    async def show(self, ctx: GatewayContext, tenant: str, dataset: str) -> DatasetView:
        base = prefix(tenant, dataset)
        keys = await ctx.runtime.store.list(base)
        if not keys:
            raise NotFound(f"no dataset {dataset}")
        return DatasetView(
            name=dataset,
            images=[k[len(base) :] for k in keys if k.startswith(base + "images/")],
            masks=[k[len(base) :] for k in keys if k.startswith(base + "masks/")],
            manifest=base + "manifest.json" in keys,
        )

    @get("/datasets/{dataset:str}/manifest", summary="The manifest of an expanded dataset")
    async def manifest(self, ctx: GatewayContext, tenant: str, dataset: str) -> Response[bytes]:
        key = prefix(tenant, dataset) + "manifest.json"
        if not await ctx.runtime.store.exists(key):
            raise NotFound(f"dataset {dataset} has no manifest (not expanded yet?)")
        return Response(await ctx.runtime.store.get(key), media_type="application/json")

    @post("/datasets/{dataset:str}/expand", status_code=HTTP_202_ACCEPTED, summary="Expand a dataset with the five variants")
    async def expand(self, ctx: GatewayContext, tenant: str, dataset: str, data: ExpandRequest) -> Response[JobView]:
        target = data.target or f"{dataset}-aug"
        try:
            request = msgspec.convert(
                {
                    "source": prefix(tenant, dataset),
                    "target": prefix(tenant, target),
                    "variants": data.variants,
                    "angle": data.angle,
                    "blur_sigma": data.blur_sigma,
                },
                dataset_v1.DatasetExpandRequested,
            )
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid expansion request: {exc}") from exc
        if not await ctx.runtime.store.list(request.source + "images/"):
            raise NotFound(f"dataset {dataset} has no images (PUT /v1/datasets/{dataset}/images/<file> first)")
        job_id = uuid.uuid4().hex
        env = Envelope(
            id=f"{job_id}:{dataset_v1.EXPAND_REQUESTED}",
            type=dataset_v1.EXPAND_REQUESTED,
            time=now(),
            source="gateway",
            tenant=tenant,
            job_id=job_id,
            trace_id=new_trace_id(),
            data=request,
        )
        state = await ctx.jobs.apply(env)
        await ctx.runtime.bus.publish(env)
        return Response(job_view(state), status_code=HTTP_202_ACCEPTED, headers={"Location": f"/v1/jobs/{job_id}"})

    @get("/jobs/{job_id:str}", summary="Any job's status and progress (segmentations have a richer view)")
    async def job(self, ctx: GatewayContext, tenant: str, job_id: str) -> JobView:
        state = await ctx.jobs.get(job_id) if len(job_id) <= 128 else None
        if state is None or state.tenant != tenant:
            raise NotFound(f"no job {job_id}")
        return job_view(state)
