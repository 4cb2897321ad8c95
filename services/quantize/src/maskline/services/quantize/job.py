"""Quantize and edit jobs: command event → progress events → a new registered version → `model.v1.quantized`.

Nothing becomes servable before the end: reports and the recipe are written under the job's own
folder, the TorchScript is loaded back and run, and only then is the version registered. A
redelivered job finds its marker and answers with the version it already made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import structlog
from numpy.typing import NDArray

from maskline.contracts import model_v1
from maskline.contracts.common_v1 import ObjectRef
from maskline.contracts.envelope import Envelope, next_event
from maskline.contracts.model_v1 import ModelFormat, ModelVersion, QuantizationInfo, VersionRef
from maskline.services.quantize import architecture as arch
from maskline.services.quantize import engine, feature_maps, onnx_qdq, onnx_workbench, workbench
from maskline.services.quantize.settings import QuantizeSettings
from maskline.shared import keys, references
from maskline.shared.bus import Bus
from maskline.shared.errors import PermanentError
from maskline.shared.images.codec import to_model_input
from maskline.shared.jobs import followups
from maskline.shared.models.access import ModelAccess
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.store import DecoderFile, register_model
from maskline.shared.storage import ObjectNotFound, ObjectStore

SOURCE = "quantize"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
log = structlog.get_logger(SOURCE)


def _info(request: model_v1.QuantizeRequested, images: list[NDArray[np.float32]]) -> dict[str, Any]:
    """How the version was made, as its QuantizationInfo records it."""
    return {
        "method": request.method,
        "per_channel": request.per_channel,
        "keep_float": request.keep_float,
        "dataset": request.dataset,
        "images": len(images),
        "percentile": request.percentile,
    }


class QuantizeJobs:
    def __init__(
        self, store: ObjectStore, registry: ModelRegistry, access: ModelAccess, bus: Bus, settings: QuantizeSettings
    ) -> None:
        self.store, self.registry, self.access, self.bus, self.settings = store, registry, access, bus, settings

    async def _version(self, tenant: str, ref: VersionRef, precision: str | None = None) -> ModelVersion:
        """A version the tenant may use (its own, shared with it, or public), else a permanent failure."""
        try:
            target = await self.access.target(tenant, ref.name, owner=ref.owner, version=ref.version, precision=precision)
            return target.model
        except ModelNotFound as exc:
            raise PermanentError(str(exc), code="model_not_found") from exc

    async def _images(self, tenant: str, prefix: str, limit: int, model: ModelVersion) -> list[NDArray[np.float32]]:
        references.check_dataset(prefix, tenant)
        base = prefix.rstrip("/") + "/"
        listed = await self.store.list(keys.dataset_part(base, keys.IMAGES))
        found = [k for k in listed if k.lower().endswith(IMAGE_SUFFIXES)]
        if not found:  # a plain prefix of images (not a dataset): anything but masks
            masks = keys.dataset_part(base, keys.MASKS)
            found = [k for k in await self.store.list(base) if k.lower().endswith(IMAGE_SUFFIXES) and not k.startswith(masks)]
        if not found:
            raise PermanentError(f"the calibration set {base} has no images", code="empty_calibration_set")
        images = []
        for key in sorted(found)[:limit]:
            try:
                images.append(
                    await asyncio.to_thread(to_model_input, await self.store.get(key), model.input_size, model.preprocessing)
                )
            except (OSError, ValueError) as exc:
                raise PermanentError(f"calibration image {key} cannot be decoded: {exc}", code="bad_calibration_image") from exc
        return images

    def _progress(self, env: Envelope[Any]) -> Callable[[str, int, int], None]:
        loop = asyncio.get_running_loop()
        published: list[int] = []

        def report(stage: str, done: int, total: int) -> None:
            part = len(published)
            published.append(part)
            event = next_event(
                env,
                model_v1.QUANTIZE_PROGRESSED,
                SOURCE,
                model_v1.QuantizeProgressed(stage=stage, done=done, total=total),
                part=part,
            )
            asyncio.run_coroutine_threadsafe(self.bus.publish(event), loop)

        return report

    async def _finished(self, env: Envelope[Any], name: str) -> list[Envelope[Any]] | None:
        try:
            folder = keys.quantize_folder(env.tenant, name, env.job_id)
            done = msgspec.json.decode(await self.store.get(f"{folder}/done.json"), type=model_v1.Quantized)
        except ObjectNotFound:
            return None
        return [
            next_event(env, model_v1.QUANTIZED, SOURCE, done),
            *followups.evaluation(env, SOURCE, done.model, evaluate_on(env)),
        ]

    async def _publish_version(
        self,
        env: Envelope[Any],
        parent: ModelVersion,
        name: str,
        precision: str,
        built: workbench.Built | onnx_workbench.OnnxBuilt,
        info: dict[str, Any],
        started: float,
        format: ModelFormat = "torchscript",
    ) -> list[Envelope[Any]]:
        folder = keys.quantize_folder(env.tenant, name, env.job_id)
        refs: dict[str, ObjectRef] = {}
        for kind, body in built.documents.items():
            refs[kind] = await self.store.put(f"{folder}/{kind}.json", body, "application/json")
        recipe = refs.pop("recipe")
        quantization = QuantizationInfo(recipe=recipe, reports=refs, **info)
        decoder = None
        if parent.decoder is not None:  # a SAM pair: its encoder quantized, its prompt decoder as it was
            d = parent.decoder
            decoder = DecoderFile(await self.store.get(d.weights.key), d.encoder_input, d.encoder_output, d.mask_input_size)
        model = await register_model(
            self.store,
            self.registry,
            self.bus,
            name=name,
            weights=built.torchscript if isinstance(built, workbench.Built) else built.weights,
            labels=parent.labels,
            input_size=parent.input_size,
            source=SOURCE,
            tenant=env.tenant,
            precision=precision,
            parent=f"{parent.name}/{parent.version}",
            architecture=parent.architecture,
            quantization=quantization,
            metrics=built.summary,
            description=f"{precision} from {parent.owner}/{parent.name}/{parent.version} ({info['method']})",
            parents=[parent],
            job_id=env.job_id,
            trace_id=env.trace_id,
            output=parent.output,
            preprocessing=parent.preprocessing,
            format=format,
            decoder=decoder,
        )
        done = model_v1.Quantized(
            model=model,
            parent=VersionRef(parent.name, parent.version, parent.owner),
            seconds=round(time.perf_counter() - started, 3),
            summary=built.summary,
        )
        await self.store.put(f"{folder}/done.json", msgspec.json.encode(done), "application/json")
        return [next_event(env, model_v1.QUANTIZED, SOURCE, done), *followups.evaluation(env, SOURCE, model, evaluate_on(env))]

    def _inputs(self, weights: bytes, model: ModelVersion, images: list[NDArray[np.float32]]) -> workbench.Inputs:
        assert model.architecture is not None
        s = self.settings
        return workbench.Inputs(
            weights=weights,
            architecture=model.architecture,
            allowed=s.allowed_architectures,
            images=images,
            report_images=min(s.report_images, len(images)),
            batch=s.batch,
        )

    async def quantize(self, env: Envelope[model_v1.QuantizeRequested]) -> list[Envelope[Any]]:
        request = env.data
        started = time.perf_counter()
        name = request.name or request.model.name
        if (finished := await self._finished(env, name)) is not None:
            return finished
        parent = await self._version(env.tenant, request.model, precision="fp32")
        if parent.precision != "fp32":
            raise PermanentError(
                f"{parent.name}/{parent.version} is {parent.precision}; quantize its float parent", code="not_float"
            )
        images = await self._images(env.tenant, request.dataset, request.max_images, parent)
        if parent.format != "torchscript" or parent.architecture is None:  # no source code: through ONNX
            return await self._quantize_onnx(env, parent, name, images, started)
        weights = await self.store.get(parent.weights.key)
        recipe = engine.Recipe(
            method=request.method,
            precision=request.precision,
            per_channel=request.per_channel,
            keep_float=request.keep_float,
            percentile=request.percentile,
            observers={},
        )
        try:
            built = await asyncio.to_thread(
                workbench.quantize,
                self._inputs(weights, parent, images),
                recipe,
                request.compare_calibrators,
                self._progress(env),
            )
        except arch.UnsupportedLayer as exc:
            raise PermanentError(str(exc), code="unsupported_layer") from exc
        except (arch.ArchitectureError, engine.QuantizationError) as exc:
            raise PermanentError(str(exc), code="not_quantizable") from exc
        return await self._publish_version(env, parent, name, request.precision, built, _info(request, images), started)

    async def _quantize_onnx(
        self,
        env: Envelope[model_v1.QuantizeRequested],
        parent: ModelVersion,
        name: str,
        images: list[NDArray[np.float32]],
        started: float,
    ) -> list[Envelope[Any]]:
        """QDQ through ONNX Runtime with the platform's calibrators; the version is an ONNX model."""
        request = env.data
        job = onnx_workbench.OnnxJob(
            weights=await self.store.get(parent.weights.key),  # a SAM pair's: its image encoder
            format="onnx" if parent.format == "sam" else parent.format,
            images=images,
            report_images=min(self.settings.report_images, len(images)),
            method=request.method,
            precision=request.precision,
            per_channel=request.per_channel,
            keep_float=request.keep_float,
            percentile=request.percentile,
            compare=request.compare_calibrators,
        )
        try:
            built = await asyncio.to_thread(onnx_workbench.quantize, job, self._progress(env))
        except (onnx_workbench.NotExportable, onnx_qdq.OnnxQuantizationError) as exc:
            raise PermanentError(str(exc), code="not_quantizable") from exc
        info = _info(request, images)
        kind: ModelFormat = "sam" if parent.decoder is not None else "onnx"  # a SAM pair keeps its float decoder
        return await self._publish_version(env, parent, name, request.precision, built, info, started, format=kind)

    async def edit(self, env: Envelope[model_v1.EditRequested]) -> list[Envelope[Any]]:
        request = env.data
        started = time.perf_counter()
        if (finished := await self._finished(env, request.model.name)) is not None:
            return finished
        target = await self._version(env.tenant, request.model)
        if target.quantization is None or target.parent is None:
            raise PermanentError(f"{target.name}/{target.version} is not a quantized version", code="not_quantized")
        if target.format != "torchscript":
            raise PermanentError(
                f"{target.name}/{target.version} is an ONNX QDQ model: layer edits apply to PyTorch int8 versions only",
                code="not_editable",
            )
        parent = await self._float_root(env.tenant, target)  # an edit of an edit: the float root is further up
        before = msgspec.json.decode(await self.store.get(target.quantization.recipe.key), type=engine.Recipe)
        after = msgspec.structs.replace(before, edits=(*before.edits, request.edit))
        q = target.quantization
        images = await self._images(target.owner, q.dataset, q.images, parent)
        weights = await self.store.get(parent.weights.key)
        try:
            built = await asyncio.to_thread(workbench.edit, self._inputs(weights, parent, images), before, after)
        except (arch.ArchitectureError, engine.QuantizationError, RuntimeError) as exc:
            raise PermanentError(f"edit of {request.edit.layer} refused: {exc}", code="invalid_edit") from exc
        info = {f: getattr(q, f) for f in ("method", "per_channel", "keep_float", "dataset", "images", "percentile")}
        info["edits"] = after.edits
        return await self._publish_version(env, target, target.name, target.precision, built, info, started)

    async def feature_maps(self, env: Envelope[model_v1.FeatureMapsRequested]) -> list[Envelope[Any]]:
        """One image through the int8 version and its float parent: one layer's channels, drawn."""
        request = env.data
        target = await self._version(env.tenant, request.model)
        if target.quantization is None or target.format == "onnx":
            raise PermanentError(
                f"{target.name}/{target.version} is not a PyTorch int8 version: nothing to compare layer by layer",
                code="not_quantized",
            )
        parent = await self._float_root(env.tenant, target)
        recipe = msgspec.json.decode(await self.store.get(target.quantization.recipe.key), type=engine.Recipe)
        png = await references.read(self.store, request.image, env.tenant)
        image = await asyncio.to_thread(to_model_input, png, parent.input_size, parent.preprocessing)
        inputs = self._inputs(await self.store.get(parent.weights.key), parent, [image])
        try:
            maps = await asyncio.to_thread(feature_maps.render, inputs, recipe, request.layer, image[:1], request.channels)
        except engine.QuantizationError as exc:
            raise PermanentError(str(exc), code="unknown_layer") from exc
        picture = await self.store.put(keys.artifact(env.tenant, env.job_id, "feature-maps.png"), maps.png, "image/png")
        rendered = model_v1.FeatureMapsRendered(
            model=VersionRef(target.name, target.version, target.owner),
            layer=request.layer,
            picture=picture,
            shown=maps.shown,
            sqnr_db=maps.sqnr_db,
            float_range=maps.float_range,
            int8_range=maps.int8_range,
        )
        return [next_event(env, model_v1.FEATURE_MAPS_RENDERED, SOURCE, rendered)]

    async def _float_root(self, tenant: str, model: ModelVersion) -> ModelVersion:
        """The float version a quantized one (or an edit of it) was made from."""
        while model.quantization is not None and model.lineage:
            model = await self._version(tenant, model.lineage[0])
        return model

    async def describe(self, env: Envelope[model_v1.ModelRegistered]) -> list[Envelope[Any]]:
        """Write the graph of a newly registered float version: an ONNX one, or one that declares its architecture."""
        model = env.data.model
        if (model.architecture is None and model.format != "onnx") or model.quantization is not None:
            return []
        key = keys.model_graph(model.owner, model.name, model.version)
        if await self.store.exists(key):
            return []
        weights = await self.store.get(model.weights.key)
        try:
            if model.format == "onnx":
                body = await asyncio.to_thread(lambda: msgspec.json.encode(onnx_qdq.describe(onnx_qdq.load(weights))))
            else:
                assert model.architecture is not None
                body = await asyncio.to_thread(
                    workbench.float_graph, weights, model.architecture, self.settings.allowed_architectures, model.input_size
                )
        except Exception as exc:  # a graph is a convenience: never dead-letter a registration for it
            log.warning("graph.failed", model=model.name, version=model.version, error=str(exc))
            return []
        await self.store.put(key, body, "application/json")
        return []


def evaluate_on(env: Envelope[Any]) -> str | None:
    """The held-out dataset a quantize job names (an edit job names none)."""
    return env.data.evaluate_on if isinstance(env.data, model_v1.QuantizeRequested) else None
