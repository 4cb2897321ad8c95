"""`/v1/datasets`: upload a tenant's images (and masks), expand them with the five-way augmentation."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.status_codes import HTTP_202_ACCEPTED

from maskline.contracts import dataset_v1
from maskline.contracts.http_v1 import DatasetView, ExpandRequest, JobView
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.bodies import IMAGE, RAW_BODY, raw
from maskline.services.gateway.core.errors import NotFound, Unprocessable
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.segmentations import sniff
from maskline.services.gateway.segmentations.sniff import check_image_header
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.job_routes import CommandJobs
from maskline.shared import keys
from maskline.shared.images.checks import formats

#: What a dataset or file name that cannot be a key is refused with (`checked_name`, `file_key`).
NAME_REFUSALS = Unprocessable.coded("invalid_name")


def checked_name(value: str, what: str) -> str:
    try:
        return keys.segment(value, what)
    except keys.InvalidKey as exc:
        raise Unprocessable(str(exc), code="invalid_name") from exc


def prefix(tenant: str, dataset: str) -> str:
    return keys.dataset(tenant, checked_name(dataset, "dataset name"))


def file_key(tenant: str, dataset: str, part: str, filename: str) -> str:
    """The key of one of the tenant's dataset files (a name that cannot be a key: 422 `invalid_name`)."""
    try:
        return keys.dataset_file(tenant, dataset, part, filename)
    except keys.InvalidKey as exc:
        raise Unprocessable(str(exc), code="invalid_name") from exc


class DatasetController(Controller):
    path = "/v1"
    tags = ["datasets"]

    @put(
        "/datasets/{dataset:str}/{part:str}/{filename:str}",
        summary="Upload one image (part=images) or mask (part=masks)",
        opt={
            RAW_BODY: raw("The image's or the mask's bytes (a mask: a PNG of class indices)", IMAGE),
            ANSWERS: Answers(refusals=NAME_REFUSALS + sniff.REFUSALS),
        },
    )
    async def upload(
        self,
        settings: GatewaySettings,
        store: Store,
        tenant: str,
        dataset: str,
        part: str,
        filename: str,
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        if part not in ("images", "masks"):
            raise NotFound(f"no such dataset part {part!r}: use images or masks")
        body = await request.body()
        allowed = formats(settings.allowed_formats)
        await asyncio.to_thread(check_image_header, body, allowed_formats=allowed, max_pixels=settings.max_pixels)
        key = file_key(tenant, dataset, part, filename)
        ref = await store.put(key, body, request.headers.get("content-type", "application/octet-stream"))
        return {"key": ref.key, "size": ref.size, "sha256": ref.sha256}

    @get("/datasets/{dataset:str}", summary="Files of a dataset", opt={ANSWERS: Answers(refusals=NAME_REFUSALS)})
    async def show(self, store: Store, tenant: str, dataset: str) -> DatasetView:
        base = prefix(tenant, dataset)
        found = await store.list(base)
        if not found:
            raise NotFound(f"no dataset {dataset}")
        return DatasetView(
            name=dataset,
            images=[k[len(base) :] for k in found if k.startswith(keys.dataset_part(base, keys.IMAGES))],
            masks=[k[len(base) :] for k in found if k.startswith(keys.dataset_part(base, keys.MASKS))],
            manifest=keys.dataset_manifest(base) in found,
        )

    @get(
        "/datasets/{dataset:str}/manifest",
        summary="The manifest of an expanded dataset",
        opt={ANSWERS: Answers(refusals=NAME_REFUSALS, files=("application/json",))},
    )
    async def manifest(self, store: Store, tenant: str, dataset: str) -> Response[bytes]:
        key = keys.dataset_manifest(prefix(tenant, dataset))
        if not await store.exists(key):
            raise NotFound(f"dataset {dataset} has no manifest (not expanded yet?)")
        return Response(await store.get(key), media_type="application/json")

    @post(
        "/datasets/{dataset:str}/expand",
        status_code=HTTP_202_ACCEPTED,
        summary="Expand a dataset with the five variants",
        opt={ANSWERS: Answers(refusals=NAME_REFUSALS + Unprocessable.coded())},
    )
    async def expand(
        self, store: Store, command_jobs: CommandJobs, tenant: str, dataset: str, data: ExpandRequest
    ) -> Response[JobView]:
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
        if not await store.list(keys.dataset_part(request.source, keys.IMAGES)):
            raise NotFound(f"dataset {dataset} has no images (PUT /v1/datasets/{dataset}/images/<file> first)")
        return await command_jobs.submit(tenant, dataset_v1.EXPAND_REQUESTED, request, webhook_url=data.webhook_url)
