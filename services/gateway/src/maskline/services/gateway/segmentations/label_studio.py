"""Label Studio's ML-backend protocol: interactive labelling with maskline's promptable segmentation.

Label Studio calls `<backend URL>/health`, `/setup` and `/predict` (label-studio-ml-backend's
`api.py`). The backend URL is `/v1/label-studio/<model>` (`default`: the platform's default model),
with the tenant's API key as the basic-auth password Label Studio sends (auth.py). A predict call
carries tasks and, while an annotator clicks, the context: keypoints (`keypointlabels`, positive or
not) and a rectangle (`rectanglelabels`), in percent of the image. They become one prompted object;
the answer is its mask as `brushlabels` (Label Studio's RLE) and its outline as `polygonlabels`,
for whichever of those controls the labelling config has, under the label the annotator chose.
Without context (pre-annotation), every object is segmented (`everything`).

Images: a task's image is one of the tenant's dataset images (a URL or path ending in
`/v1/datasets/<dataset>/images/<file>`), or a `data:` URL. Nothing else is fetched: the gateway
does not download from addresses a task names.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import mimetypes
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

import msgspec
from litestar import Controller, get, post
from litestar.params import Body
from litestar.status_codes import HTTP_200_OK

from maskline.contracts import seg_v1
from maskline.contracts.envelope import new_job_id
from maskline.contracts.http_v1 import SEGMENTATION_DEFAULTS, Region
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.errors import NotFound, Unprocessable
from maskline.services.gateway.core.shedding import ADMITTED
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS, file_key
from maskline.services.gateway.segmentations import exports
from maskline.services.gateway.segmentations.submission import (
    UPLOAD_REFUSALS,
    SegmentationJobs,
    Upload,
    check_prompts,
    check_upload,
)
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.job_routes import artifact_bytes
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.shared.storage import ObjectNotFound

MODEL_VERSION = "maskline-prompts"
DATASET_IMAGE = re.compile(r"/v1/datasets/([^/?#]+)/images/([^/?#]+)$")
DATA_URL = re.compile(r"^data:([\w/+.-]+);base64,(.*)$", re.DOTALL)
#: Seconds one task may take (its job's wait): Label Studio waits for the whole answer.
TASK_WAIT_S = 60.0
#: Tasks one predict call may carry: each is a job, run one after another while Label Studio waits.
MAX_TASKS = 16


@dataclass(frozen=True)
class Controls:
    """The names a prediction refers to, from the labelling config."""

    image: str
    """The Image tag's name (a result's `to_name`)."""
    image_key: str
    """The task data key the Image tag reads (`value="$image"` → `image`)."""
    brush: str | None
    polygon: str | None


def controls(label_config: str | None) -> Controls:
    """The Image, BrushLabels and PolygonLabels of a labelling config (exports' names without one)."""
    if not label_config:
        name = exports.LABEL_STUDIO_IMAGE
        return Controls(name, name, exports.LABEL_STUDIO_BRUSH, exports.LABEL_STUDIO_CONTROL)
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as exc:
        raise Unprocessable(f"label_config is not XML: {exc}", code="invalid_label_config") from exc
    image = root.find(".//Image")
    if image is None or not image.get("name"):
        raise Unprocessable("the labelling config has no Image tag", code="invalid_label_config")
    brush, polygon = root.find(".//BrushLabels"), root.find(".//PolygonLabels")
    if brush is None and polygon is None:
        raise Unprocessable("the labelling config has neither BrushLabels nor PolygonLabels", code="invalid_label_config")
    return Controls(
        image=str(image.get("name")),
        image_key=str(image.get("value", "$image")).lstrip("$"),
        brush=None if brush is None else brush.get("name"),
        polygon=None if polygon is None else polygon.get("name"),
    )


def prompts_of(context: Any) -> tuple[seg_v1.Prompts, str | None]:
    """The annotator's clicks as one prompted object, and the label chosen with them (no context:
    every object). Coordinates arrive in percent of the original image (kept inside it); the
    prompt is made as any published one is decoded, so the contract's limits hold."""
    box, points, label = None, [], None
    try:
        for item in (context or {}).get("result", []):
            kind, value = item.get("type"), item.get("value", {})
            width, height = float(item.get("original_width", 0)), float(item.get("original_height", 0))
            if kind not in ("keypointlabels", "rectanglelabels") or not width > 0 or not height > 0:
                continue
            label = label or next(iter(value.get(kind) or []), None)
            x, y = _percent(value["x"]) * width / 100, _percent(value["y"]) * height / 100
            if kind == "rectanglelabels":
                right, bottom = _percent(value["x"] + value["width"]), _percent(value["y"] + value["height"])
                box = [x, y, right * width / 100, bottom * height / 100]
            else:  # a plain keypoint says "here"; Label Studio's smart keypoints say which
                points.append([min(x, width - 0.5), min(y, height - 0.5), 1 if item.get("is_positive", True) else 0])
        raw: dict[str, Any] = {"everything": True}
        if box is not None or points:
            raw = {"objects": [{"points": points} | ({"box": box} if box is not None else {})]}
        return msgspec.convert(raw, seg_v1.Prompts), str(label) if label is not None else None
    except (AttributeError, KeyError, TypeError, ValueError, msgspec.ValidationError) as exc:
        raise Unprocessable(f"the context is no prompt: {exc!r}", code="invalid_prompt") from exc


def _percent(value: Any) -> float:
    """A coordinate in percent of the image, kept within it."""
    number = float(value)
    if number != number:  # NaN
        raise ValueError("a coordinate is NaN")
    return min(max(number, 0.0), 100.0)


async def task_image(store: Store, tenant: str, source: str) -> tuple[bytes, str, str]:
    """(bytes, file name, content type) of a task's image: a `data:` URL, or one of the tenant's dataset images."""
    if (data := DATA_URL.match(source)) is not None:
        try:
            return base64.b64decode(data.group(2), validate=True), "task", data.group(1)
        except binascii.Error as exc:
            raise Unprocessable(f"the task's data URL is not base64: {exc}", code="invalid_image_source") from exc
    found = DATASET_IMAGE.search(source.split("?", 1)[0])
    if found is None:
        raise Unprocessable(
            "a task's image must be one of your dataset images (…/v1/datasets/<dataset>/images/<file>) or a data: URL",
            code="invalid_image_source",
        )
    dataset, filename = (unquote(part) for part in found.groups())
    try:
        body = await store.get(file_key(tenant, dataset, "images", filename))  # only the caller's own
    except ObjectNotFound as exc:
        raise NotFound(f"dataset {dataset} has no image {filename}", code="dataset_image_not_found") from exc
    return body, filename, mimetypes.guess_type(filename)[0] or "application/octet-stream"


def results(
    regions: list[Region], objects: tuple[seg_v1.ObjectFound, ...], label: str | None, c: Controls, size: tuple[int, int]
) -> list[dict[str, Any]]:
    """The job's regions as Label Studio results under the chosen label (or each object's own)."""
    width, height = size
    by_index = {o.index: o for o in objects}
    found = []
    for region in regions:
        obj = by_index.get(region.class_id)
        name = label or (obj.label if obj and obj.label else "object")
        named = msgspec.structs.replace(region, label=name)
        shapes = [(c.brush, exports.brush_result), (c.polygon, exports.polygon_results)]
        for control, make in shapes:
            if control is None:
                continue
            for result_id, kind, value in make(named, width, height):
                found.append(
                    {
                        "id": result_id,
                        "type": kind,
                        "from_name": control,
                        "to_name": c.image,
                        "original_width": width,
                        "original_height": height,
                        "image_rotation": 0,
                        "score": obj.score if obj else region.score,
                        "value": value,
                    }
                )
    return found


class LabelStudioBackend(Controller):
    path = "/v1/label-studio/{model:str}"
    tags = ["label-studio"]

    @get("/health", summary="Label Studio ML backend: health (the URL's last part names the model; `default`: the platform's)")
    async def health(self, tenant: str, model: str) -> dict[str, str]:
        return {"status": "UP", "model_class": "maskline"}  # the backend's health; the model is checked at predict

    @post("/setup", status_code=HTTP_200_OK, summary="Label Studio ML backend: setup (the labelling config is read at predict)")
    async def setup(self, tenant: str, model: str, data: Annotated[dict[str, Any], Body()]) -> dict[str, str]:
        return {"model_version": MODEL_VERSION}

    @post(
        "/predict",
        status_code=HTTP_200_OK,
        summary="Label Studio ML backend: predict masks for tasks, prompted by the annotator's keypoints and rectangle",
        opt={
            ADMITTED: True,  # each task is a segmentation job: shed over the limits like a submission
            ANSWERS: Answers(
                refusals=UPLOAD_REFUSALS
                + NAME_REFUSALS
                + Unprocessable.coded(
                    "invalid_label_config",
                    "invalid_prompt",
                    "invalid_image_source",
                    "invalid_options",
                    "segmentation_unfinished",
                    others="the failed segmentation's own `code`",
                )
                + NotFound.coded("dataset_image_not_found")
            ),
        },
    )
    async def predict(
        self,
        settings: GatewaySettings,
        store: Store,
        waiters: CompletionWaiters,
        segmentation_jobs: SegmentationJobs,
        tenant: str,
        model: str,
        data: Annotated[dict[str, Any], Body()],
    ) -> dict[str, Any]:
        tasks_given = data.get("tasks") or []
        if not isinstance(tasks_given, list) or len(tasks_given) > MAX_TASKS:
            raise Unprocessable(f"tasks: a list of at most {MAX_TASKS} tasks", code="invalid_options")
        c = controls(data.get("label_config"))
        params = data.get("params") or {}
        prompts, label = prompts_of(params.get("context") if isinstance(params, dict) else None)
        try:
            options = seg_v1.SegmentationOptions(
                model=SEGMENTATION_DEFAULTS.model if model == "default" else model, prompts=prompts
            )
        except (ValueError, msgspec.ValidationError) as exc:
            raise Unprocessable(f"invalid model {model!r}: {exc}", code="invalid_options") from exc
        tasks = Tasks(settings, store, waiters, segmentation_jobs, tenant)
        answers = []
        for task in tasks_given:
            fields = task.get("data") if isinstance(task, dict) else None
            source = str(fields.get(c.image_key, "")) if isinstance(fields, dict) else ""
            answers.append(await tasks.predict(source, options, label, c))
        return {"results": answers}


@dataclass(frozen=True)
class Tasks:
    """One Label Studio task at a time: a prompted segmentation job of the tenant's, waited for."""

    settings: GatewaySettings
    store: Store
    waiters: CompletionWaiters
    segmentation_jobs: SegmentationJobs
    tenant: str

    async def predict(self, source: str, options: seg_v1.SegmentationOptions, label: str | None, c: Controls) -> dict[str, Any]:
        body, filename, content_type = await task_image(self.store, self.tenant, source)
        header = await check_upload(self.settings, body, options)
        if options.prompts is not None:
            check_prompts(options.prompts, header.width, header.height)
        job_id = new_job_id()
        upload = Upload(body, hashlib.sha256(body).hexdigest(), filename, content_type)
        wait = min(TASK_WAIT_S, self.settings.max_wait_s)
        with self.waiters.watching(self.tenant, job_id) as finished:
            state = await self.segmentation_jobs.start(self.tenant, job_id, upload, options)
            state = await self.waiters.result(self.tenant, job_id, finished, wait, fresh=state) or state
        if state.error is not None:
            raise Unprocessable(f"segmentation {job_id} failed: {state.error.reason}", code=state.error.code)
        if state.status != "completed":
            raise Unprocessable(
                f"segmentation {job_id} is still {state.status} after {wait:.0f} s", code="segmentation_unfinished"
            )
        doc = exports.decode(await artifact_bytes(self.store, state, "regions"))
        size = (doc.image["width"], doc.image["height"])
        found = await asyncio.to_thread(results, doc.regions, doc.objects, label, c, size)  # brush RLE: pixel runs
        score = max((o.score for o in doc.objects), default=0.0)
        return {"result": found, "score": score, "model_version": f"{MODEL_VERSION}:{job_id}"}
