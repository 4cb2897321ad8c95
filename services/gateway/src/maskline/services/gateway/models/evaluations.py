"""Evaluation and comparison over HTTP: score a version on a labelled dataset (a job run by infer),
list a version's evaluations, and put versions side by side on one dataset."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED

from maskline.contracts import model_v1
from maskline.contracts.http_v1 import ComparedVersion, ComparisonView, EvaluateBody, JobView
from maskline.contracts.model_v1 import Evaluation, ModelVersion, VersionRef
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.errors import Conflict, NotFound, Unprocessable
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS
from maskline.services.gateway.data.datasets import prefix as dataset_prefix
from maskline.services.gateway.models.pictures import difference
from maskline.services.gateway.models.sharing import OwnerParam
from maskline.services.gateway.tracking.job_routes import CommandJobs
from maskline.shared import keys
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.storage import ObjectNotFound

_decoder = msgspec.json.Decoder(Evaluation)


async def evaluations_of(store: Store, tenant: str, model: ModelVersion) -> list[Evaluation]:
    """The tenant's evaluations of one version, newest first."""
    return await evaluations_at(store, tenant, model.owner, model.name, model.version)


async def evaluations_at(store: Store, tenant: str, owner: str, name: str, version: int) -> list[Evaluation]:
    """`evaluations_of` by the version's owner, name and number."""
    prefix = keys.evaluations(tenant, owner, name, version)
    infos = [info for info in await store.list_info(prefix) if info.key.endswith(".json")]  # not the masks
    found = [_decoder.decode(await store.get(info.key)) for info in infos]
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
        opt={ANSWERS: Answers(refusals=NAME_REFUSALS + Unprocessable.coded())},
    )
    async def evaluate(
        self,
        models: ModelLookup,
        command_jobs: CommandJobs,
        tenant: str,
        name: str,
        version: int,
        data: EvaluateBody,
        owner: OwnerParam = None,
    ) -> Response[JobView]:
        model = await models.model(tenant, name, version, owner)
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
        return await command_jobs.submit(tenant, model_v1.EVALUATE_REQUESTED, request, webhook_url=data.webhook_url)

    @get("/{version:int}/evaluations", summary="Your evaluations of one version, newest first")
    async def evaluations(
        self, models: ModelLookup, store: Store, tenant: str, name: str, version: int, owner: OwnerParam = None
    ) -> list[Evaluation]:
        return await evaluations_of(store, tenant, await models.model(tenant, name, version, owner))

    @get(
        "/compare",
        summary="Versions side by side on one labelled dataset: lineage, method, parameters, per-class scores, size, latency",
        opt={ANSWERS: Answers(refusals=NAME_REFUSALS)},
    )
    async def compare(
        self,
        models: ModelLookup,
        registry: ModelRegistry,
        store: Store,
        tenant: str,
        name: str,
        versions: Annotated[
            str, Parameter(query="versions", description="comma-separated version numbers", pattern=r"^\d+(,\d+)*$")
        ],
        dataset: Annotated[str, Parameter(query="dataset", description="one of your labelled datasets")],
        owner: OwnerParam = None,
    ) -> ComparisonView:
        prefix = dataset_prefix(tenant, dataset)
        compared = [
            await models.model(tenant, name, number, owner) for number in dict.fromkeys(int(v) for v in versions.split(","))
        ]
        rows = []
        for model in compared:
            method, parameters = how_made(model)
            on_dataset = [e for e in await evaluations_of(store, tenant, model) if e.dataset == prefix]
            aliases = await registry.serving(model)
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
        differences: dict[str, str] = {}
        evaluated = [row.evaluation for row in rows if row.evaluation is not None]
        if len(rows) == 2 and len(evaluated) == 2 and evaluated[0].dataset_sha256 == evaluated[1].dataset_sha256:
            m, sha = compared[0], evaluated[0].dataset_sha256
            folder = keys.evaluation_mask(tenant, m.owner, m.name, m.version, sha, "x.png").rsplit("/", 1)[0]
            query = f"?versions={rows[0].version},{rows[1].version}&dataset={dataset}" + (f"&owner={owner}" if owner else "")
            for key in sorted(await store.list(folder + "/")):
                image = key.rsplit("/", 1)[-1]
                differences[image] = f"/v1/models/{name}/compare/masks/{image}{query}"
        return ComparisonView(
            owner=compared[0].owner, name=name, dataset=prefix, labels=compared[0].labels, versions=rows, differences=differences
        )

    @get(
        "/compare/masks/{image:str}",
        summary="Two versions' masks on one image of an evaluated dataset, and where they differ (PNG)",
        media_type="image/png",
        opt={
            ANSWERS: Answers(
                refusals=NAME_REFUSALS + NotFound.coded("not_evaluated") + Conflict.coded("dataset_changed"),
                files=("image/png",),
                headers={"X-Pixels-Differ": True},
            )
        },
    )
    async def mask_difference(
        self,
        models: ModelLookup,
        store: Store,
        tenant: str,
        name: str,
        image: str,
        versions: Annotated[str, Parameter(query="versions", description="two version numbers, a,b", pattern=r"^\d+,\d+$")],
        dataset: Annotated[str, Parameter(query="dataset", description="the dataset both were evaluated on")],
        owner: OwnerParam = None,
    ) -> Response[bytes]:
        prefix = dataset_prefix(tenant, dataset)
        pair = [await models.model(tenant, name, int(v), owner) for v in versions.split(",")]
        evaluations = []
        for model in pair:
            found = next((e for e in await evaluations_of(store, tenant, model) if e.dataset == prefix), None)
            if found is None:
                raise NotFound(f"version {model.version} was not evaluated on {dataset}", code="not_evaluated")
            evaluations.append(found)
        if evaluations[0].dataset_sha256 != evaluations[1].dataset_sha256:
            raise Conflict(f"{dataset} changed between the two evaluations: evaluate both again", code="dataset_changed")
        try:
            masks = [
                await store.get(keys.evaluation_mask(tenant, m.owner, m.name, m.version, e.dataset_sha256, image))
                for m, e in zip(pair, evaluations, strict=True)
            ]
            stem = keys.stem_of(keys.segment(image, "image name"))
            listed = await store.list(keys.dataset_part(prefix, keys.IMAGES))
            images = [k for k in listed if keys.stem_of(k) == stem]
            if not images:
                raise ObjectNotFound(image)
            picture = await store.get(images[0])
        except (ObjectNotFound, keys.InvalidKey) as exc:
            raise NotFound(f"no evaluated image {image!r} in {dataset}") from exc
        captions = (f"v{pair[0].version}", f"v{pair[1].version}")
        png, differ = await asyncio.to_thread(difference, picture, masks[0], masks[1], captions)
        return Response(png, media_type="image/png", headers={"X-Pixels-Differ": str(differ)})
