"""The model-merge job: `model.v1.merge.requested` → a new registered, deployable version → `model.v1.merged`."""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import torch

from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope, next_event
from maskline.contracts.model_v1 import ModelFormat, ModelVersion
from maskline.services.weights import bn, onnx_weights
from maskline.services.weights.methods import MergeOptions, Method
from maskline.services.weights.streaming import IncompatibleModels, merge_states
from maskline.shared import keys
from maskline.shared.bus import Bus
from maskline.shared.errors import PermanentError
from maskline.shared.images.codec import decode_rgb
from maskline.shared.jobs import followups
from maskline.shared.models.access import ModelAccess
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.store import register_model
from maskline.shared.storage import ObjectNotFound, ObjectStore

SOURCE = "weights"


def _extract_state(torchscript: bytes, target: Path) -> None:
    """TorchScript → a plain state-dict file that `torch.load(mmap=True)` can stream from."""
    module = torch.jit.load(io.BytesIO(torchscript), map_location="cpu")  # type: ignore[no-untyped-call]
    torch.save(module.state_dict(), target)


def _build_onnx(
    first: bytes, paths: list[Path], names: list[str], method: Method, options: MergeOptions, base: Path | None
) -> tuple[bytes, bool]:
    return onnx_weights.with_state(first, merge_states(paths, names, method, options, base)), False


def _build(
    first: bytes,
    paths: list[Path],
    names: list[str],
    method: Method,
    options: MergeOptions,
    base: Path | None,
    calibration: list[bytes],
    input_size: tuple[int, int],
) -> tuple[bytes, bool]:
    merged = merge_states(paths, names, method, options, base)
    module = torch.jit.load(io.BytesIO(first), map_location="cpu")  # type: ignore[no-untyped-call]
    module.load_state_dict(merged)
    del merged
    reestimated = bool(calibration) and bn.reestimate(module, [decode_rgb(c) for c in calibration], input_size) > 0
    module.eval()
    out = io.BytesIO()
    torch.jit.save(module, out)
    return out.getvalue(), reestimated


async def merge_weight_objects(
    store: ObjectStore,
    keys: list[str],
    names: list[str],
    method: Method,
    options: MergeOptions,
    *,
    base_key: str | None = None,
    calibration: list[bytes] | None = None,
    input_size: tuple[int, int] = (128, 128),
    format: ModelFormat = "torchscript",
) -> tuple[bytes, bool]:
    """Merge TorchScript (or ONNX) files in object storage into one; the first file gives the architecture.

    Inputs are fetched one at a time and turned into memory-mapped state dicts on local disk, so
    memory stays near one model plus the output whatever their number.
    """
    with tempfile.TemporaryDirectory(prefix="maskline-merge-") as tmp:
        paths, first = [], b""
        for i, key in enumerate([*keys, *([base_key] if base_key else [])]):
            data = await store.get(key)
            if i == 0:
                first = data
            path = Path(tmp) / f"{i}.pt"
            if format == "onnx":
                try:
                    onnx_weights.check_same_graph(first, data, ([*names, "base"])[min(i, len(names))], names[0])
                except IncompatibleModels as exc:
                    raise PermanentError(str(exc), code="incompatible_models") from exc
                await asyncio.to_thread(onnx_weights.save_state, data, path)
            else:
                await asyncio.to_thread(_extract_state, data, path)
            paths.append(path)
            del data
        base_path = paths.pop() if base_key else None
        try:
            if format == "onnx":
                return await asyncio.to_thread(_build_onnx, first, paths, names, method, options, base_path)
            return await asyncio.to_thread(_build, first, paths, names, method, options, base_path, calibration or [], input_size)
        except (IncompatibleModels, ValueError) as exc:
            raise PermanentError(str(exc), code="incompatible_models") from exc


async def merge_models(
    store: ObjectStore, registry: ModelRegistry, access: ModelAccess, bus: Bus, env: Envelope[model_v1.ModelMergeRequested]
) -> list[Envelope[Any]]:
    """Merge versions the tenant may use into a new version of the tenant's own model `name`."""
    request = env.data
    started = time.perf_counter()
    if len(request.models) < 2:
        raise PermanentError("merging needs at least two model versions", code="invalid_request")
    marker = keys.merge_marker(env.tenant, request.name, env.job_id)
    try:
        done = msgspec.json.decode(await store.get(marker), type=ModelVersion)
        return [
            next_event(
                env,
                model_v1.MERGED,
                SOURCE,
                model_v1.ModelMerged(model=done, method=request.method, parents=request.models, seconds=0.0),
            ),
            *followups.evaluation(env, SOURCE, done, request.evaluate_on),
        ]
    except ObjectNotFound:
        pass
    try:
        versions = [await access.ref(env.tenant, m) for m in request.models]
        base = await access.ref(env.tenant, request.base) if request.base else None
    except ModelNotFound as exc:
        raise PermanentError(str(exc), code="model_not_found") from exc
    first = versions[0]
    formats = {v.format for v in [*versions, *([base] if base else [])]}
    if "sam" in formats:
        raise PermanentError("SAM-format pairs are not merged (an encoder and a decoder each)", code="incompatible_models")
    if len(formats) > 1:
        raise PermanentError("the versions mix TorchScript and ONNX: merge versions of one format", code="incompatible_models")
    if first.format == "onnx" and request.bn_dataset:
        raise PermanentError(
            "BatchNorm re-estimation needs TorchScript versions (ONNX graphs fold it)", code="incompatible_models"
        )
    for v in versions[1:]:
        if v.labels != first.labels or v.input_size != first.input_size:
            raise PermanentError(
                f"{v.name}/{v.version} has labels {v.labels} and input {v.input_size}; "
                f"{first.name}/{first.version} has {first.labels} and {first.input_size}",
                code="incompatible_models",
            )
    calibration: list[bytes] = []
    if request.bn_dataset:
        images = await store.list(keys.dataset_part(request.bn_dataset, keys.IMAGES))
        if not images:
            raise PermanentError(
                f"no calibration images under {keys.dataset_part(request.bn_dataset, keys.IMAGES)}", code="empty_dataset"
            )
        calibration = [await store.get(k) for k in images[:512]]
    names = [f"{v.owner}/{v.name}/{v.version}" for v in versions]
    options = MergeOptions(weights=request.weights, scale=request.scale, density=request.density)
    weights, reestimated = await merge_weight_objects(
        store,
        [v.weights.key for v in versions],
        names,
        request.method,
        options,
        base_key=base.weights.key if base else None,
        calibration=calibration,
        input_size=first.input_size,
        format=first.format,
    )
    parents = ",".join(names)
    model = await register_model(
        store,
        registry,
        bus,
        name=request.name,
        weights=weights,
        labels=first.labels,
        input_size=first.input_size,
        source=SOURCE,
        tenant=env.tenant,
        precision=first.precision,
        parent=parents,
        description=f"{request.method} merge of {parents}"
        + (" + BN re-estimation" if reestimated else "")
        + f" (job {env.job_id})",
        parents=[*versions, *([base] if base else [])],
        job_id=env.job_id,
        trace_id=env.trace_id,
        output=first.output,
        preprocessing=first.preprocessing,
        format=first.format,
    )
    await store.put(marker, msgspec.json.encode(model), "application/json")
    result = model_v1.ModelMerged(
        model=model,
        method=request.method,
        parents=request.models,
        seconds=round(time.perf_counter() - started, 3),
        bn_reestimated=reestimated,
    )
    return [next_event(env, model_v1.MERGED, SOURCE, result), *followups.evaluation(env, SOURCE, model, request.evaluate_on)]
