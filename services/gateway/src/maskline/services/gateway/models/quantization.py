"""Quantization over HTTP: start a job, edit a layer, read the STEP/CROSS/calibrator reports and graphs."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from litestar import Controller, Response, get, post
from litestar.status_codes import HTTP_202_ACCEPTED

from maskline.contracts import model_v1
from maskline.contracts.common_v1 import ObjectRef
from maskline.contracts.http_v1 import FeatureMapsBody, JobView, LayerEditBody, QuantizeBody
from maskline.contracts.model_v1 import ModelVersion, VersionRef
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.errors import NotFound, Unprocessable
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS, file_key
from maskline.services.gateway.data.datasets import prefix as dataset_prefix
from maskline.services.gateway.models.sharing import OwnerParam
from maskline.services.gateway.tracking.job_routes import CommandJobs
from maskline.shared import keys
from maskline.shared.storage import ObjectNotFound

REPORTS = ("step", "cross", "calibrators", "travel")
_NOT_QUANTIZED = Unprocessable.coded("not_quantized")  # `quantized`


async def _json(store: Store, key: str, missing: str) -> Any:
    try:
        return msgspec.json.decode(await store.get(key))
    except ObjectNotFound as exc:
        raise NotFound(missing) from exc


async def quantized(models: ModelLookup, tenant: str, name: str, version: int, owner: str | None) -> ModelVersion:
    """A quantized version the tenant may use (edits and feature maps need int8 layers)."""
    model = await models.model(tenant, name, version, owner)
    if model.quantization is None:
        raise Unprocessable(
            f"{name}/{version} is {model.precision}: only quantized versions have int8 layers", code="not_quantized"
        )
    return model


class QuantizeController(Controller):
    path = "/v1/models"
    tags = ["quantization"]

    @post(
        "/quantizations",
        status_code=HTTP_202_ACCEPTED,
        summary="Quantize a float version to HYBRID or INT8 (a job)",
        opt={ANSWERS: Answers(refusals=NAME_REFUSALS + Unprocessable.coded("not_float", "unprocessable"))},
    )
    async def quantize(
        self, models: ModelLookup, command_jobs: CommandJobs, tenant: str, data: QuantizeBody
    ) -> Response[JobView]:
        raw = msgspec.structs.asdict(data)
        raw["dataset"] = dataset_prefix(tenant, data.dataset)
        if data.evaluate_on:
            raw["evaluate_on"] = dataset_prefix(tenant, data.evaluate_on)
        try:
            request = msgspec.convert(raw, model_v1.QuantizeRequested)
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid quantization request: {exc}") from exc
        # Only a float version can be quantized: the float one of that name and version is meant.
        ref = request.model
        try:
            parent = await models.model(tenant, ref.name, ref.version, ref.owner, precision="fp32")
        except NotFound:
            parent = await models.model(tenant, ref.name, ref.version, ref.owner)  # exists, but is not float?
        if parent.precision != "fp32":
            raise Unprocessable(
                f"{parent.name}/{parent.version} is {parent.precision}: quantize a float version", code="not_float"
            )
        return await command_jobs.submit(tenant, model_v1.QUANTIZE_REQUESTED, request, webhook_url=data.webhook_url)

    @post(
        "/{name:str}/{version:int}/edits",
        status_code=HTTP_202_ACCEPTED,
        summary="Edit one int8 layer (a new version)",
        opt={ANSWERS: Answers(refusals=_NOT_QUANTIZED)},
    )
    async def edit(
        self,
        models: ModelLookup,
        command_jobs: CommandJobs,
        tenant: str,
        name: str,
        version: int,
        data: LayerEditBody,
        owner: OwnerParam = None,
    ) -> Response[JobView]:
        model = await quantized(models, tenant, name, version, owner)
        ref = VersionRef(name, version, model.owner)
        request = model_v1.EditRequested(model=ref, edit=data.edit())
        return await command_jobs.submit(tenant, model_v1.EDIT_REQUESTED, request, webhook_url=data.webhook_url)

    @get("/{name:str}/{version:int}/reports/{kind:str}", summary="STEP, CROSS, calibrator comparison or edit travel report")
    async def report(
        self,
        models: ModelLookup,
        store: Store,
        tenant: str,
        name: str,
        version: int,
        kind: str,
        layer: str | None = None,
        owner: OwnerParam = None,
    ) -> dict[str, Any]:
        if kind not in REPORTS:
            raise NotFound(f"no report {kind!r}; reports: {', '.join(REPORTS)}")
        model = await models.model(tenant, name, version, owner)
        ref = model.quantization.reports.get(kind) if model.quantization else None
        if ref is None:
            raise NotFound(f"{name}/{version} has no {kind} report" + ("" if model.quantization else " (it is not quantized)"))
        document: dict[str, Any] = await _json(store, ref.key, f"the {kind} report of {name}/{version} is missing")
        if layer is not None and "layers" in document:
            document["layers"] = [row for row in document["layers"] if row.get("layer") == layer]
            if not document["layers"]:
                raise NotFound(f"{name}/{version} has no int8 layer {layer!r}")
        return document

    @post(
        "/{name:str}/{version:int}/feature-maps",
        status_code=HTTP_202_ACCEPTED,
        summary="Step one dataset image through an int8 version and its float parent: one layer's channels, drawn (a job)",
        opt={ANSWERS: Answers(refusals=_NOT_QUANTIZED + NAME_REFUSALS + NotFound.coded("input_missing") + Unprocessable.coded())},
    )
    async def feature_maps(
        self,
        models: ModelLookup,
        store: Store,
        command_jobs: CommandJobs,
        tenant: str,
        name: str,
        version: int,
        data: FeatureMapsBody,
        owner: OwnerParam = None,
    ) -> Response[JobView]:
        model = await quantized(models, tenant, name, version, owner)
        key = file_key(tenant, data.dataset, "images", data.image)
        try:
            body = await store.get(key)
        except ObjectNotFound as exc:
            raise NotFound(f"no image {data.image} in your dataset {data.dataset}", code="input_missing") from exc
        image = ObjectRef(key=key, size=len(body), sha256=hashlib.sha256(body).hexdigest(), content_type="image/png")
        try:
            request = msgspec.convert(
                {
                    "model": {"name": model.name, "version": model.version, "owner": model.owner},
                    "layer": data.layer,
                    "image": msgspec.to_builtins(image),
                    "channels": data.channels,
                },
                model_v1.FeatureMapsRequested,
            )
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid feature-map request: {exc}") from exc
        return await command_jobs.submit(tenant, model_v1.FEATURE_MAPS_REQUESTED, request, webhook_url=data.webhook_url)

    @get("/{name:str}/{version:int}/graph", summary="The network's layers and connections (nodes, edges)")
    async def graph(
        self, models: ModelLookup, store: Store, tenant: str, name: str, version: int, owner: OwnerParam = None
    ) -> dict[str, Any]:
        model = await models.model(tenant, name, version, owner)
        if model.quantization is not None and "graph" in model.quantization.reports:
            key = model.quantization.reports["graph"].key
        else:
            key = keys.model_graph(model.owner, name, version)
        why = "it declares no architecture" if model.architecture is None else "the quantize service has not described it yet"
        result: dict[str, Any] = await _json(store, key, f"no graph for {name}/{version}: {why}")
        return result
