"""`/v1/segmentations`: submit an image, follow the job, download its artifacts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from maskline.contracts import seg_v1
from maskline.contracts.envelope import new_job_id
from maskline.contracts.http_v1 import EXPORT_FORMATS, SEGMENTATION_DEFAULTS, TTA_DEFAULTS, SegmentationView, UploadView
from maskline.services.gateway.core.answers import ANSWERS, ETAG, LOCATION, Answers
from maskline.services.gateway.core.bodies import IMAGE, RAW_BODY, raw
from maskline.services.gateway.core.errors import BadRequest, Conflict, NotFound, Unprocessable
from maskline.services.gateway.core.idempotent_requests import IDEMPOTENCY, NOT_NEEDED, OWN, checked_key
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.shedding import ADMITTED
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS, file_key
from maskline.services.gateway.segmentations import exports
from maskline.services.gateway.segmentations.control import cancel
from maskline.services.gateway.segmentations.submission import (
    UPLOAD_REFUSALS,
    SegmentationJobs,
    Upload,
    check_prompts,
    check_upload,
)
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.job_routes import artifact_bytes, download, owned_job
from maskline.services.gateway.tracking.views import job_path, segmentation_view
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.services.gateway.tracking.webhook_settings import JOB_WEBHOOK_REFUSALS, register_for_job
from maskline.shared import keys
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.fence import Fences
from maskline.shared.jobs.idempotency import IdempotencyKeys, KeyInProgress, KeyReused, fingerprint_of
from maskline.shared.jobs.state import JobState, JobStore
from maskline.shared.storage import ObjectNotFound
from maskline.shared.tenants.webhooks import WebhookTargets

MAX_DEADLINE_S = 7 * 24 * 3600.0
MAX_EXPORT_JOBS = 1000
#: What an artifact or an export is answered as: a picture, the regions (JSON), a Label Studio config (XML).
EXPORTED = ("image/png", "application/json", "application/xml")


@dataclass
class SegmentationForm:
    """multipart/form-data body of `POST /v1/segmentations`: an image, or one of your datasets' images."""

    image: UploadFile | None = None
    dataset_image: str | None = None
    """`<dataset>/<file>`: one of your dataset's images instead of an upload (a dataset run submits each)."""
    model: str = SEGMENTATION_DEFAULTS.model
    owner: str | None = None
    """Whose model: leave empty for your own or the platform's; name the owner of a model shared with you."""
    version: int | None = None
    precision: str | None = None
    """fp32, hybrid or int8: the alias's version in that precision, `<alias>-<precision>` (or check the pinned version has it)."""
    alias: str | None = None
    """Without a version: the model's alias to run (default `stable`), with its canary split and shadow."""
    outputs: str = ",".join(SEGMENTATION_DEFAULTS.outputs)
    overlay_alpha: float = SEGMENTATION_DEFAULTS.overlay_alpha
    min_region_area: int = SEGMENTATION_DEFAULTS.min_region_area
    tta: bool = False
    """Test-time augmentation: segment the variants, map back and fuse."""
    tta_variants: str = ",".join(TTA_DEFAULTS.variants)
    tta_angle: float = TTA_DEFAULTS.angle
    tta_blur_sigma: float = TTA_DEFAULTS.blur_sigma
    tta_fusion: str = TTA_DEFAULTS.fusion
    deadline_s: float | None = None
    """Seconds from now after which the job fails with `deadline_exceeded` instead of running late."""
    webhook_url: str | None = None
    """Where to POST this job's end (signed with your webhook secret: PUT /v1/webhooks first)."""
    prompts: str | None = None
    """Promptable segmentation, as JSON (contract `Prompts`): `{"objects": [{"box": [x0, y0, x1, y1],
    "points": [[x, y], [x, y, 0]]}]}` (pixels of this image; label 0: not the object), or
    `{"everything": true}`. One mask per object, with its predicted quality (docs/prompts.md)."""
    prompt_mask_job: str | None = None
    """With `prompts`: one of your finished segmentations whose mask is the earlier answer to refine."""
    prompt_mask_value: int = 0
    """Which value of that mask is the object (0: any nonzero pixel)."""


def parse_options(form: SegmentationForm) -> seg_v1.SegmentationOptions:
    outputs = tuple(o.strip() for o in form.outputs.split(",") if o.strip())
    tta = None
    if form.tta:
        tta = {
            "variants": tuple(v.strip() for v in form.tta_variants.split(",") if v.strip()),
            "angle": form.tta_angle,
            "blur_sigma": form.tta_blur_sigma,
            "fusion": form.tta_fusion,
        }
    prompts = None
    if form.prompts:
        try:
            prompts = msgspec.json.decode(form.prompts, type=seg_v1.Prompts)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise Unprocessable(f"invalid prompts: {exc}", code="invalid_prompt") from exc
    raw = {
        "prompts": prompts,
        "tta": tta,
        "model": form.model,
        "owner": form.owner or None,
        "version": form.version,
        "precision": form.precision or None,
        "alias": form.alias or None,
        "outputs": outputs,
        "overlay_alpha": form.overlay_alpha,
        "min_region_area": form.min_region_area,
    }
    try:
        return msgspec.convert(raw, seg_v1.SegmentationOptions)
    except msgspec.ValidationError as exc:
        raise Unprocessable(f"invalid options: {exc}", code="invalid_options") from exc


async def with_prior_mask(
    options: seg_v1.SegmentationOptions, form: SegmentationForm, job_store: JobStore, store: Store, tenant: str
) -> seg_v1.SegmentationOptions:
    """The prompts with an earlier job's mask (one of the tenant's own) as the answer to refine. The
    mask is handed over as an upload of the tenant's (inputs, content-addressed), as a bus client
    would hand it: every stage may read inputs, none reads another job's outputs."""
    if not form.prompt_mask_job:
        return options
    if options.prompts is None:
        raise Unprocessable("prompt_mask_job refines prompts: give prompts too", code="invalid_prompt")
    earlier = await owned_job(job_store, tenant, form.prompt_mask_job)
    if "mask" not in earlier.artifacts:
        raise Unprocessable(f"segmentation {form.prompt_mask_job} has no mask to refine", code="invalid_prompt")
    body = await artifact_bytes(store, earlier, "mask")
    sha256 = hashlib.sha256(body).hexdigest()
    ref = await store.put(keys.upload(tenant, sha256), body, "image/png", sha256)
    try:
        prior = seg_v1.PriorMask(ref=ref, value=form.prompt_mask_value)
        return msgspec.structs.replace(options, prompts=msgspec.structs.replace(options.prompts, mask=prior))
    except (msgspec.ValidationError, ValueError) as exc:
        raise Unprocessable(f"invalid prompt_mask_value: {exc}", code="invalid_prompt") from exc


async def image_of(store: Store, tenant: str, form: SegmentationForm) -> tuple[bytes, str | None, str]:
    """The image to segment, its file name and content type: the upload, or the tenant's dataset image."""
    if (form.image is None) == (form.dataset_image is None):
        raise Unprocessable("give either image (a file) or dataset_image (<dataset>/<file>)", code="invalid_options")
    if form.image is not None:
        return await form.image.read(), form.image.filename, form.image.content_type
    assert form.dataset_image is not None
    dataset, _, file = form.dataset_image.partition("/")
    key = file_key(tenant, dataset, "images", file)  # only the tenant's own
    try:
        body = await store.get(key)
    except ObjectNotFound as exc:
        raise NotFound(f"dataset {dataset} has no image {file}", code="dataset_image_not_found") from exc
    return body, file, mimetypes.guess_type(file)[0] or "application/octet-stream"


class SegmentationController(Controller):
    path = "/v1/segmentations"
    tags = ["segmentations"]

    @post(
        status_code=HTTP_202_ACCEPTED,
        summary="Submit an image for segmentation",
        opt={
            ADMITTED: True,
            IDEMPOTENCY: OWN,
            ANSWERS: Answers(
                refusals=UPLOAD_REFUSALS
                + NAME_REFUSALS
                + JOB_WEBHOOK_REFUSALS
                + NotFound.coded("dataset_image_not_found")
                + Unprocessable.coded("invalid_options", others="the failed job's own `code`, when it failed within `wait`")
                + Unprocessable.coded("invalid_prompt")
                + NotFound.coded()
                + BadRequest.coded("invalid_idempotency_key")
                + Conflict.coded("idempotency_key_in_progress", retry_after=True)
                + Unprocessable.coded("idempotency_key_reused"),
                also={200: "The job finished within `wait` seconds"},
                headers={LOCATION: True},
            ),
        },
    )
    async def submit(
        self,
        intake: Intake,
        settings: GatewaySettings,
        store: Store,
        idempotency: IdempotencyKeys,
        waiters: CompletionWaiters,
        job_store: JobStore,
        webhooks: WebhookTargets,
        segmentation_jobs: SegmentationJobs,
        tenant: str,
        data: Annotated[SegmentationForm, Body(media_type=RequestEncodingType.MULTI_PART)],
        wait: Annotated[
            float,
            Parameter(
                query="wait", ge=0, le=3600, default=0.0, description="Seconds to wait for the result (0: answer 202 at once)"
            ),
        ] = 0.0,
        idempotency_key: Annotated[
            str | None, Parameter(header="Idempotency-Key", description="1 to 255 characters; same key, same request")
        ] = None,
    ) -> Response[SegmentationView]:
        intake.require_bus()
        key = checked_key(idempotency_key)
        options = parse_options(data)
        if data.deadline_s is not None and not 0 < data.deadline_s <= MAX_DEADLINE_S:
            raise Unprocessable(f"deadline_s must be in (0, {MAX_DEADLINE_S}] seconds", code="invalid_options")
        body, filename, content_type = await image_of(store, tenant, data)
        header = await check_upload(settings, body, options)
        if options.prompts is not None:
            check_prompts(options.prompts, header.width, header.height)
        options = await with_prior_mask(options, data, job_store, store, tenant)
        sha256 = hashlib.sha256(body).hexdigest()
        # Random even with an Idempotency-Key (its claim keeps the id for the retries): a job id that
        # another tenant could compute is a message id it could take first (docs/security.md).
        job_id = new_job_id()
        details = (msgspec.json.encode(options), (filename or "").encode())
        print_ = fingerprint_of(bytes.fromhex(sha256), *(hashlib.sha256(d).digest() for d in details))  # the body hashed once
        replay, revision = False, 0
        if key is not None:
            try:
                outcome = await idempotency.claim(tenant, key, print_, job_id)
            except KeyReused as exc:
                raise Unprocessable(str(exc), code="idempotency_key_reused") from exc
            except KeyInProgress as exc:
                raise Conflict(str(exc), code="idempotency_key_in_progress", retry_after_s=exc.retry_after_s) from exc
            job_id, replay, revision = outcome.job_id, not outcome.fresh, outcome.revision
        with waiters.watching(tenant, job_id) as finished:  # listening before the request is published
            state = await job_store.get(tenant, job_id) if replay else None
            fresh = state is None  # this request writes the job's first state, while it listens
            if state is None:
                upload = Upload(body, sha256, filename, content_type, data.deadline_s)
                try:
                    if data.webhook_url:  # recorded before the job exists: its end cannot come first
                        allow_private = settings.webhook_allow_private
                        await register_for_job(webhooks, tenant, job_id, data.webhook_url, allow_private=allow_private)
                    state = await segmentation_jobs.start(tenant, job_id, upload, options)
                except BaseException:
                    if key is not None:
                        # Handed back, not released: the publish may have reached the stream though
                        # its ack was lost (a leader change), so the retry must take the same job id
                        # (its publish is then a duplicate the stream drops), never a new one.
                        with contextlib.suppress(Exception):  # the bus may be what failed: the lease expires then
                            await idempotency.hand_back(tenant, key, print_, job_id, revision)
                    raise
                if key is not None:
                    await idempotency.complete(tenant, key, print_, job_id)
            if wait > 0 and not state.finished:
                waited = min(wait, settings.max_wait_s)
                state = await waiters.result(tenant, job_id, finished, waited, fresh=state if fresh else None) or state
        if state.status == "failed" and state.error is not None:
            raise Unprocessable(
                f"segmentation {job_id} failed in {state.error.stage}: {state.error.reason}", code=state.error.code
            )
        status = HTTP_200_OK if state.finished else HTTP_202_ACCEPTED
        return Response(segmentation_view(state), status_code=status, headers={"Location": job_path(job_id)})

    @delete(
        "/{job_id:str}",
        status_code=HTTP_200_OK,
        summary="Cancel a segmentation wherever it is: its queued work is skipped and no outputs stand (audited)",
        opt={ANSWERS: Answers(refusals=Conflict.coded("job_finished"))},
    )
    async def cancel(
        self,
        intake: Intake,
        cancellations: Cancellations,
        fences: Fences,
        job_store: JobStore,
        tenant: str,
        job_id: str,
    ) -> SegmentationView:
        state = await owned_job(job_store, tenant, job_id)
        return await cancel(state, intake=intake, cancellations=cancellations, fences=fences, job_store=job_store)

    @get("/{job_id:str}", summary="Status, timings and links of a segmentation")
    async def status(self, job_store: JobStore, tenant: str, job_id: str) -> SegmentationView:
        return segmentation_view(await owned_job(job_store, tenant, job_id))

    @get(
        "/{job_id:str}/{artifact:str}",
        summary="Download an artifact: mask, overlay or regions",
        opt={ANSWERS: Answers(refusals=Unprocessable.coded("invalid_options"), files=EXPORTED, headers={ETAG: False})},
    )
    async def artifact(
        self,
        job_store: JobStore,
        store: Store,
        tenant: str,
        job_id: str,
        artifact: str,
        format: Annotated[
            str | None,
            Parameter(query="format", description="regions only: " + ", ".join(EXPORT_FORMATS) + " (exports.py)"),
        ] = None,
        image_url: Annotated[str | None, Parameter(query="image_url", description="labelstudio: the image's URL")] = None,
    ) -> Response[bytes]:
        state = await owned_job(job_store, tenant, job_id)
        if format is None:
            return await download(store, state, artifact)
        if artifact != "regions":
            raise Unprocessable(f"format= applies to regions, not {artifact}", code="invalid_options")
        return await export_response(store, [state], format, [image_url or job_path(job_id)])


class ExportController(Controller):
    path = "/v1/exports"
    tags = ["segmentations"]

    @get(
        "/segmentations",
        summary="Several segmentations in one COCO file or one Label Studio import",
        opt={ANSWERS: Answers(refusals=Unprocessable.coded("invalid_options"), files=EXPORTED[1:])},
    )
    async def segmentations(
        self,
        job_store: JobStore,
        store: Store,
        tenant: str,
        jobs: Annotated[str, Parameter(query="jobs", description="comma-separated job ids (at most 1000)")],
        format: Annotated[str, Parameter(query="format", description=", ".join(EXPORT_FORMATS))] = "coco",
    ) -> Response[bytes]:
        ids = [j.strip() for j in jobs.split(",") if j.strip()]
        if not 0 < len(ids) <= MAX_EXPORT_JOBS:
            raise Unprocessable(f"jobs= names 1 to {MAX_EXPORT_JOBS} segmentations", code="invalid_options")
        states = [await owned_job(job_store, tenant, job_id) for job_id in ids]
        return await export_response(store, states, format, [job_path(j) for j in ids])


async def export_response(store: Store, states: list[JobState], format: str, image_urls: list[str]) -> Response[bytes]:
    if format not in EXPORT_FORMATS:
        raise Unprocessable(f"unknown format {format!r}: one of {', '.join(EXPORT_FORMATS)}", code="invalid_options")
    docs = [exports.decode(await artifact_bytes(store, state, "regions")) for state in states]
    filenames = [state.filename for state in states]
    if format == "coco":
        body: Any = exports.coco_results(docs)
    elif format == "coco-dataset":
        body = exports.coco_dataset(docs, filenames)
    elif format in ("labelstudio", "labelstudio-brush"):
        # A brush mask is packed pixel run by pixel run: off the event loop.
        body = await asyncio.to_thread(
            exports.label_studio_tasks, docs, image_urls, filenames, as_brush=format == "labelstudio-brush"
        )
    else:
        return Response(exports.label_studio_config(docs).encode(), media_type="application/xml")
    return Response(msgspec.json.encode(body), media_type="application/json")


class UploadController(Controller):
    path = "/v1/uploads"
    tags = ["segmentations"]

    @post(
        status_code=HTTP_201_CREATED,
        summary="Hand over an image (raw body) and get the object reference to publish in a bus request",
        opt={
            IDEMPOTENCY: NOT_NEEDED,  # content-addressed: the same bytes, the same key, nothing twice
            RAW_BODY: raw("The image's bytes, in one of the formats MASKLINE_ALLOWED_FORMATS names", IMAGE),
            ANSWERS: Answers(refusals=UPLOAD_REFUSALS),
        },
    )
    async def upload(self, settings: GatewaySettings, store: Store, tenant: str, request: Request[Any, Any, Any]) -> UploadView:
        body = await request.body()
        fmt = (await check_upload(settings, body)).format
        sha256 = hashlib.sha256(body).hexdigest()
        content_type = request.headers.get("content-type", "application/octet-stream")
        key = keys.upload(tenant, sha256)
        if not await store.exists(key):  # content-addressed: the same bytes, the same key
            await store.put(key, body, content_type, sha256)
        return UploadView(key=key, size=len(body), sha256=sha256, content_type=content_type, format=fmt)
