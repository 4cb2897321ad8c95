"""`/v1/files`: each tenant's file manager — inputs, results, datasets and model versions, with
sizes and dates; download and delete. A model version that still serves requests is not deleted."""

from __future__ import annotations

import re
from typing import Any, Literal

from litestar import Controller, Response, delete, get
from litestar.status_codes import HTTP_204_NO_CONTENT

from maskline.contracts.model_v1 import ModelVersion
from maskline.services.gateway.core.answers import ANSWERS, OCTETS, Answers
from maskline.services.gateway.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.store import Store
from maskline.shared import keys
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.storage import ObjectNotFound

Area = Literal["inputs", "outputs", "datasets", "models"]
AREAS: tuple[Area, ...] = ("inputs", "outputs", "datasets", "models")
SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=-]{0,127}$")
#: A file's bytes: a model version's weights are ONNX or TorchScript (shared/models/store.py).
FILE_TYPES = (OCTETS, "application/onnx", "application/x-torchscript")


def _object_key(tenant: str, area: str, path: str) -> str:
    """`<area>/<tenant>/<path>`, refusing anything that could step out of the tenant's folder."""
    if area not in AREAS:
        raise NotFound(f"no area {area!r}; areas: {', '.join(AREAS)}")
    parts = path.strip("/").split("/")
    if not path.strip("/") or any(not SEGMENT.match(p) for p in parts):
        raise Unprocessable(f"invalid path {path!r}")
    return f"{area}/{tenant}/{'/'.join(parts)}"


async def _owned_model(models: ModelLookup, tenant: str, path: str) -> ModelVersion:
    name, _, version = path.strip("/").partition("/")
    if not version.isdigit() or not 1 <= int(version) <= 1_000_000_000:
        raise Unprocessable("a model is addressed as <name>/<version>")
    return await models.owned_model(tenant, name, int(version))


class FileController(Controller):
    path = "/v1/files"
    tags = ["files"]

    @get(summary="Your files: inputs, results (outputs), datasets and model versions, with sizes and dates")
    async def list_files(self, registry: ModelRegistry, store: Store, tenant: str, area: str | None = None) -> dict[str, Any]:
        areas = [area] if area else list(AREAS)
        rows: list[dict[str, Any]] = []
        for a in areas:
            if a not in AREAS:
                raise NotFound(f"no area {a!r}; areas: {', '.join(AREAS)}")
            if a == "models":
                for m in await registry.list(owner=tenant):
                    modified = m.created.isoformat() if m.created else None
                    rows.append(
                        {
                            "area": a,
                            "path": f"{m.name}/{m.version}",
                            "size": m.weights.size,
                            "modified": modified,
                            "precision": m.precision,
                            "exportable": m.exportable,
                        }
                    )
                continue
            base = f"{a}/{tenant}/"
            for info in await store.list_info(base):
                rows.append({"area": a, "path": info.key[len(base) :], "size": info.size, "modified": info.modified.isoformat()})
        return {"files": rows, "count": len(rows), "total_bytes": sum(int(r["size"]) for r in rows)}

    @get(
        "/{area:str}/{path:path}",
        summary="Download one of your files (a model version: its weights)",
        opt={
            ANSWERS: Answers(
                refusals=Forbidden.coded("not_exportable") + Unprocessable.coded(),
                files=FILE_TYPES,
                headers={"Content-Disposition": True},
            )
        },
    )
    async def download(self, models: ModelLookup, store: Store, tenant: str, area: str, path: str) -> Response[bytes]:
        if area == "models":
            model = await _owned_model(models, tenant, path)
            if not model.exportable:
                raise Forbidden(
                    f"{model.name}/{model.version} is derived from {', '.join(model.upstream)}, which you do not own: "
                    "it can be used here, its weights cannot be downloaded",
                    code="not_exportable",
                )
            key, media = model.weights.key, model.weights.content_type
        else:
            key, media = _object_key(tenant, area, path), "application/octet-stream"
        try:
            body = await store.get(key)
        except ObjectNotFound as exc:
            raise NotFound(f"no file {area}/{path}") from exc
        filename = key.rsplit("/", 1)[-1]
        return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @delete(
        "/{area:str}/{path:path}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete one of your files or model versions",
        opt={ANSWERS: Answers(refusals=Conflict.coded("model_in_service") + Unprocessable.coded())},
    )
    async def remove(self, models: ModelLookup, registry: ModelRegistry, store: Store, tenant: str, area: str, path: str) -> None:
        if area == "models":
            model = await _owned_model(models, tenant, path)
            serving = await registry.serving(model)
            if serving:
                raise Conflict(
                    f"{model.name}/{model.version} is still served: alias {', '.join(serving)} runs it; promote "
                    "another version to it, or change its rollout (/v1/models/{name}/aliases/{alias}) first",
                    code="model_in_service",
                )
            await registry.remove(model)
            for key in (model.weights.key, keys.model_graph(model.owner, model.name, model.version)):
                await store.delete(key)
            return
        key = _object_key(tenant, area, path)
        if not await store.exists(key):
            raise NotFound(f"no file {area}/{path}")
        await store.delete(key)
