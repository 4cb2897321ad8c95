"""Evaluation and comparison over HTTP: score a version on a labelled dataset (a job run by infer),
list a version's evaluations, and put versions side by side on one dataset."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED

from maskline.contracts import model_v1
from maskline.contracts.http_v1 import ComparedVersion, ComparisonView, EvaluateBody, JobView
from maskline.contracts.model_v1 import Evaluation, ModelVersion, VersionRef
from maskline.services.gateway.access import OwnerParam
from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.datasets import prefix as dataset_prefix
from maskline.services.gateway.errors import Unprocessable
from maskline.services.gateway.jobs import submit_command
from maskline.shared import keys

_decoder = msgspec.json.Decoder(Evaluation)


async def evaluations_of(ctx: GatewayContext, tenant: str, model: ModelVersion) -> list[Evaluation]:
    """The tenant's evaluations of one version, newest first."""
    prefix = keys.evaluations(tenant, model.owner, model.name, model.version)
    found = [_decoder.decode(await ctx.runtime.store.get(info.key)) for info in await ctx.runtime.store.list_info(prefix)]
    return sorted(found, key=lambda e: e.created, reverse=True)


def how_made(model: ModelVersion) -> tuple[str, dict[str, object]]:
    """The method and parameters a comparison shows for a version."""
    q = model.quantization
    if q is not None:
        method = f"quantize: {q.method}" + (" + edits" if q.edits else "")
        return method, {
            "per_channel": q.per_channel,
            "keep_float": list(q.keep_float),
            "calibration": q.dataset,
            "images": q.images,
            "percentile": q.percentile,
            "edits": [e.layer for e in q.edits],
        }
    if len(model.lineage) > 1 or model.description.startswith("federation"):
        return "merge", {"description": model.description, "inputs": len(model.lineage)}
    return "registered", {"format": model.format, "input_size": list(model.input_size)}


class EvaluationController(Controller):
    path = "/v1/models/{name:str}"
    tags = ["evaluation"]

    @post(
        "/{version:int}/evaluations",
        status_code=HTTP_202_ACCEPTED,
        summary="Score a version on one of your labelled datasets: class IoUs, mIoU, pixel accuracy, boundary F (a job)",
    )
    async def evaluate(
        self, ctx: GatewayContext, tenant: str, name: str, version: int, data: EvaluateBody, owner: OwnerParam = None
    ) -> Response[JobView]:
        model = await ctx.model(tenant, name, version, owner)
        try:
            request = model_v1.EvaluateRequested(
                model=VersionRef(model.name, model.version, model.owner),
                dataset=dataset_prefix(tenant, data.dataset),
                max_images=data.max_images,
                boundary_tolerance=data.boundary_tolerance,
            )
            request = msgspec.convert(msgspec.to_builtins(request), model_v1.EvaluateRequested)  # the contract's bounds
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid evaluation request: {exc}") from exc
        return await submit_command(ctx, tenant, model_v1.EVALUATE_REQUESTED, request)

    @get("/{version:int}/evaluations", summary="Your evaluations of one version, newest first")
    async def evaluations(
        self, ctx: GatewayContext, tenant: str, name: str, version: int, owner: OwnerParam = None
    ) -> list[Evaluation]:
        return await evaluations_of(ctx, tenant, await ctx.model(tenant, name, version, owner))

    @get(
        "/compare",
        summary="Versions side by side on one labelled dataset: lineage, method, parameters, per-class scores, size, latency",
    )
    async def compare(
        self,
        ctx: GatewayContext,
        tenant: str,
        name: str,
        versions: Annotated[
            str, Parameter(query="versions", description="comma-separated version numbers", pattern=r"^\d+(,\d+)*$")
        ],
        dataset: Annotated[str, Parameter(query="dataset", description="one of your labelled datasets")],
        owner: OwnerParam = None,
    ) -> ComparisonView:
        prefix = dataset_prefix(tenant, dataset)
        models = [await ctx.model(tenant, name, number, owner) for number in dict.fromkeys(int(v) for v in versions.split(","))]
        rows = []
        for model in models:
            method, parameters = how_made(model)
            on_dataset = [e for e in await evaluations_of(ctx, tenant, model) if e.dataset == prefix]
            aliases = await ctx.registry.serving(model)
            rows.append(
                ComparedVersion(
                    version=model.version,
                    precision=model.precision,
                    parent=model.parent,
                    lineage=model.lineage,
                    method=method,
                    parameters=parameters,
                    size_bytes=model.weights.size,
                    aliases=aliases,
                    evaluation=on_dataset[0] if on_dataset else None,
                )
            )
        return ComparisonView(owner=models[0].owner, name=name, dataset=prefix, labels=models[0].labels, versions=rows)
