"""`/v1/models`: list registered model versions and register a TorchScript segmentation model."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from maskline.contracts import model_v1
from maskline.contracts.model_v1 import Architecture, MergeMethod, ModelName, ModelVersion, VersionRef
from maskline.services.gateway.access import OwnerParam
from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.datasets import prefix as dataset_prefix
from maskline.services.gateway.errors import Unprocessable
from maskline.services.gateway.jobs import JobView, submit_command
from maskline.services.gateway.modelcheck import check_torchscript
from maskline.shared.model_store import register_model


@dataclass
class ModelForm:
    """multipart/form-data body of `POST /v1/models`."""

    weights: UploadFile
    name: str
    labels: str
    """Comma-separated class names; the first is the background."""
    input_height: int = 128
    input_width: int = 128
    description: str = ""
    architecture: str = ""
    """Optional `package.module:Class` that rebuilds the network (needed to quantize it)."""
    architecture_kwargs: str = "{}"
    """JSON object of the class's constructor arguments."""


class ModelController(Controller):
    path = "/v1/models"
    tags = ["models"]

    @get(summary="Model versions you may use: your own, the platform's public ones, and those shared with you")
    async def list_models(self, ctx: GatewayContext, tenant: str) -> list[ModelVersion]:
        usable = []
        for model in await ctx.registry.list():
            if await ctx.access.may_use(tenant, model.owner, model.name):
                usable.append(model)
        return usable

    @get("/{name:str}/{version:int}", summary="One model version (`owner`: for a model shared with you)")
    async def get_model(
        self, ctx: GatewayContext, tenant: str, name: str, version: int, owner: OwnerParam = None
    ) -> ModelVersion:
        return await ctx.model(tenant, name, version, owner)

    @post(
        "/{name:str}/{version:int}/release",
        status_code=HTTP_200_OK,
        summary="Make this version what other tenants' requests naming no version get (owner only)",
    )
    async def release(self, ctx: GatewayContext, tenant: str, name: str, version: int) -> ModelVersion:
        model = await ctx.owned_model(tenant, name, version)
        await ctx.registry.release(model)
        return model

    @post(status_code=HTTP_201_CREATED, summary="Register a TorchScript segmentation model as a new version")
    async def register(
        self, ctx: GatewayContext, tenant: str, data: Annotated[ModelForm, Body(media_type=RequestEncodingType.MULTI_PART)]
    ) -> ModelVersion:
        try:
            name = msgspec.convert(data.name, ModelName)
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid model name {data.name!r}: lowercase letters, digits, - and _") from exc
        labels = tuple(label.strip() for label in data.labels.split(",") if label.strip())
        if len(labels) < 2:
            raise Unprocessable("labels: give at least two class names, background first")
        size = (data.input_height, data.input_width)
        if min(size) < 8 or max(size) > 4096:
            raise Unprocessable("input size must be between 8 and 4096 pixels per side")
        architecture = None
        if data.architecture:
            try:
                kwargs = msgspec.json.decode(data.architecture_kwargs or "{}")
                architecture = msgspec.convert({"entrypoint": data.architecture, "kwargs": kwargs}, Architecture)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise Unprocessable(f"invalid architecture: {exc}") from exc
        weights = await data.weights.read()
        await asyncio.to_thread(check_torchscript, weights, len(labels), size)
        return await register_model(  # always under the caller's own name: nobody registers for another tenant
            ctx.runtime.store,
            ctx.registry,
            ctx.runtime.bus,
            name=name,
            weights=weights,
            labels=labels,
            input_size=size,
            source="gateway",
            tenant=tenant,
            description=data.description,
            architecture=architecture,
        )


class MergeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /v1/models/merges`: see `ModelMergeRequested`; `bn_dataset` is one of your dataset names."""

    models: tuple[VersionRef, ...]
    name: str
    method: MergeMethod = "avg"
    weights: tuple[float, ...] = ()
    base: VersionRef | None = None
    scale: float = 1.0
    density: float = 0.2
    bn_dataset: str | None = None


class ModelMergeController(Controller):
    path = "/v1/models/merges"
    tags = ["models"]

    @post(status_code=HTTP_202_ACCEPTED, summary="Merge model versions into a new version (avg, max, absmax, weighted, ...)")
    async def merge(self, ctx: GatewayContext, tenant: str, data: MergeBody) -> Response[JobView]:
        raw = msgspec.structs.asdict(data)
        if data.bn_dataset:
            raw["bn_dataset"] = dataset_prefix(tenant, data.bn_dataset)
        try:
            request = msgspec.convert(raw, model_v1.ModelMergeRequested)
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid merge request: {exc}") from exc
        for ref in (*request.models, *([request.base] if request.base else [])):
            await ctx.model(tenant, ref.name, ref.version, ref.owner)
        return await submit_command(ctx, tenant, model_v1.MERGE_REQUESTED, request)
