"""`/v1/models`: list registered model versions and register a segmentation model (TorchScript or ONNX).

Registration is a command (`model.v1.register.requested`): the gateway stores the upload and waits
for the weights service to check and register it, so torch never loads in the gateway."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from maskline.contracts import model_v1
from maskline.contracts.common_v1 import ObjectRef
from maskline.contracts.http_v1 import JobView, MergeBody, PromoteBody, WeightsUploadView
from maskline.contracts.model_v1 import STABLE, Architecture, ModelName, ModelVersion, precision_alias
from maskline.services.gateway.core.answers import ANSWERS, OCTETS, Answers
from maskline.services.gateway.core.bodies import RAW_BODY, STREAMED_BODY, limit_of, limited, raw
from maskline.services.gateway.core.errors import PayloadTooLarge, Unprocessable
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS
from maskline.services.gateway.data.datasets import prefix as dataset_prefix
from maskline.services.gateway.models.aliases import OWNER_OR_ALLOWED, PROMOTION_REFUSALS, AliasChanges
from maskline.services.gateway.models.sharing import OwnerParam
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.job_routes import CommandJobs
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.shared import keys
from maskline.shared.models.registry import ModelRegistry


@dataclass
class ModelForm:
    """multipart/form-data body of `POST /v1/models`: the weights as a file (up to the request
    limit), or the sha256 of weights streamed first to `PUT /v1/models/weights/{sha256}` (large models)."""

    name: str
    labels: str
    """Comma-separated class names; the first is the background."""
    weights: UploadFile | None = None
    weights_sha256: str = ""
    input_height: int = 128
    input_width: int = 128
    description: str = ""
    architecture: str = ""
    """Optional `package.module:Class` that rebuilds the network (needed to quantize it)."""
    architecture_kwargs: str = "{}"
    """JSON object of the class's constructor arguments."""
    format: str = ""
    """`torchscript` or `onnx`; empty: recognised from the file."""
    output: str = ""
    """The ONNX output (or TorchScript dict key) that holds the class scores; empty: the only one."""
    output_kind: str = "logits"
    """`logits` (the platform applies a softmax) or `probabilities`."""
    preprocessing: str = "{}"
    """JSON object: `resize` (stretch | letterbox | tile | longest-side), `scale`, `mean`, `std`,
    `channels` (rgb | bgr), `pad`, `overlap`."""
    decoder: UploadFile | None = None
    """SAM format: the prompt decoder's ONNX file (segment-anything's export); `weights` is then the
    image encoder's, `input_height` = `input_width` its side, `preprocessing` `longest-side`."""
    decoder_sha256: str = ""
    """Or the sha256 of the decoder streamed first to `PUT /v1/models/weights/{sha256}`."""


class ModelController(Controller):
    path = "/v1/models"
    tags = ["models"]

    @get(summary="Model versions you may use: your own, the platform's public ones, and those shared with you")
    async def list_models(self, registry: ModelRegistry, models: ModelLookup, tenant: str) -> list[ModelVersion]:
        usable = []
        for model in await registry.list():
            if await models.access.may_use(tenant, model.owner, model.name):
                usable.append(model)
        return usable

    @get("/{name:str}/{version:int}", summary="One model version (`owner`: for a model shared with you)")
    async def get_model(
        self, models: ModelLookup, tenant: str, name: str, version: int, owner: OwnerParam = None
    ) -> ModelVersion:
        return await models.model(tenant, name, version, owner)

    @post(
        "/{name:str}/{version:int}/release",
        status_code=HTTP_200_OK,
        summary="Make this version `stable` (and `stable-<precision>`): what requests naming no version run (owner only)",
        opt={**OWNER_OR_ALLOWED, ANSWERS: Answers(refusals=PROMOTION_REFUSALS)},
    )
    async def release(
        self, models: ModelLookup, registry: ModelRegistry, alias_changes: AliasChanges, tenant: str, name: str, version: int
    ) -> ModelVersion:
        model = await models.owned_model(tenant, name, version)
        for alias in (STABLE, precision_alias(STABLE, model.precision)):
            current = await registry.alias(tenant, name, alias)
            if current is None or current.version != version:
                await alias_changes.promote(tenant, name, alias, PromoteBody(version=version))
        return model

    @post(
        status_code=HTTP_201_CREATED,
        summary="Register a TorchScript, ONNX or SAM-format model as a new version (202 with the job while it is checked)",
        opt={
            ANSWERS: Answers(
                refusals=Unprocessable.coded(
                    "unprocessable",
                    "input_missing",
                    "invalid_reference",
                    "invalid_model",
                    others="the failed registration's own `code` (the weights service's check)",
                ),
                also={202: "Still being checked after MASKLINE_MAX_WAIT_S: follow the job"},
            )
        },
    )
    async def register(
        self,
        intake: Intake,
        settings: GatewaySettings,
        store: Store,
        registry: ModelRegistry,
        waiters: CompletionWaiters,
        command_jobs: CommandJobs,
        tenant: str,
        data: Annotated[ModelForm, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[ModelVersion | JobView]:
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
        try:
            output = msgspec.convert({"name": data.output or None, "kind": data.output_kind}, model_v1.ModelOutput)
            preprocessing = msgspec.json.decode(data.preprocessing or "{}", type=model_v1.Preprocessing)
            model_format = msgspec.convert(data.format or None, model_v1.ModelFormat | None)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise Unprocessable(f"invalid model description: {exc}") from exc
        intake.require_bus()
        job_id = command_jobs.fresh_job_id
        upload = await self._weights(store, tenant, job_id, data.weights, data.weights_sha256)
        decoder = None
        if data.decoder is not None or data.decoder_sha256:
            decoder = await self._weights(store, tenant, job_id, data.decoder, data.decoder_sha256)
        command = model_v1.RegisterRequested(
            name=name,
            weights=upload,
            labels=labels,
            input_size=size,
            description=data.description,
            architecture=architecture,
            format=model_format,
            output=output,
            preprocessing=preprocessing,
            decoder=decoder,
        )
        with waiters.watching(tenant, job_id) as finished:  # listening before the command is published
            accepted = await command_jobs.submit(tenant, model_v1.REGISTER_REQUESTED, command, job_id=job_id)
            state = await waiters.result(tenant, job_id, finished, settings.max_wait_s)
        if state is None or (state.model is None and state.status != "failed"):
            return accepted  # type: ignore[return-value]  # still being checked: follow the job
        if state.status == "failed":
            error = state.error
            raise Unprocessable(error.reason if error else "registration failed", code=error.code if error else "invalid_model")
        assert state.model is not None
        model = await registry.get(tenant, state.model.name, state.model.version)
        return Response(model, status_code=HTTP_201_CREATED, headers={"Location": f"/v1/models/{model.name}/{model.version}"})

    @staticmethod
    async def _weights(store: Store, tenant: str, job_id: str, file: UploadFile | None, given_sha256: str) -> ObjectRef:
        """The uploaded file stored for the job, or the reference of weights streamed before."""
        if (file is None) == (not given_sha256):
            raise Unprocessable("give the weights as a file, or the sha256 of weights uploaded to /v1/models/weights/{sha256}")
        if file is not None:
            weights = await file.read()
            key = keys.job_upload(tenant, job_id, hashlib.sha256(weights).hexdigest())
            return await store.put(key, weights, "application/octet-stream")
        sha256 = checked_sha256(given_sha256)
        key = keys.model_upload(tenant, sha256)
        found = await store.list_info(key)
        if not found or found[0].key != key:
            raise Unprocessable(f"no weights with sha256 {sha256} were uploaded by you", code="input_missing")
        return ObjectRef(key=key, size=found[0].size, sha256=sha256, content_type="application/octet-stream")

    @put(
        "/weights/{sha256:str}",
        status_code=HTTP_201_CREATED,
        summary="Stream model weights (raw body, up to MASKLINE_MAX_MODEL_BYTES), checked against their sha256",
        request_max_body_size=None,  # streamed under the model limit (bodies.py)
        opt={
            STREAMED_BODY: "max_model_bytes",
            RAW_BODY: raw("The weights' bytes, streamed (up to MASKLINE_MAX_MODEL_BYTES)", OCTETS),
            ANSWERS: Answers(
                refusals=PayloadTooLarge.coded("model_too_large") + Unprocessable.coded("checksum_mismatch", "invalid_reference")
            ),
        },
    )
    async def upload_weights(
        self, settings: GatewaySettings, store: Store, tenant: str, sha256: str, request: Request[Any, Any, Any]
    ) -> WeightsUploadView:
        sha256 = checked_sha256(sha256)
        limit = limit_of(request, settings)
        key = keys.model_upload(tenant, sha256)
        chunks = limited(request, limit, lambda size: too_large(size, limit))
        try:
            ref = await store.put_stream(key, chunks, "application/octet-stream")
        except PayloadTooLarge:
            await store.delete(key)
            raise
        if ref.sha256 != sha256:
            await store.delete(key)
            raise Unprocessable(f"the body's sha256 is {ref.sha256}, not {sha256}: upload again", code="checksum_mismatch")
        return WeightsUploadView(key=ref.key, size=ref.size, sha256=ref.sha256)


SHA256 = re.compile(r"^[0-9a-f]{64}$")


def checked_sha256(value: str) -> str:
    """The weights' name, as the path of their upload and the `weights_sha256` of a registration give it."""
    sha256 = value.lower()
    if not SHA256.match(sha256):
        raise Unprocessable(f"{value!r} is not a sha256: 64 hexadecimal digits", code="invalid_reference")
    return sha256


def too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"model weights of {size} bytes are over the limit of {limit} bytes (MASKLINE_MAX_MODEL_BYTES)", code="model_too_large"
    )


class ModelMergeController(Controller):
    path = "/v1/models/merges"
    tags = ["models"]

    @post(
        status_code=HTTP_202_ACCEPTED,
        summary="Merge model versions into a new version (avg, max, absmax, weighted, ...)",
        opt={ANSWERS: Answers(refusals=NAME_REFUSALS + Unprocessable.coded())},
    )
    async def merge(self, models: ModelLookup, command_jobs: CommandJobs, tenant: str, data: MergeBody) -> Response[JobView]:
        raw = msgspec.structs.asdict(data)
        for field in ("bn_dataset", "evaluate_on"):
            if raw[field]:
                raw[field] = dataset_prefix(tenant, raw[field])
        try:
            request = msgspec.convert(raw, model_v1.ModelMergeRequested)
        except msgspec.ValidationError as exc:
            raise Unprocessable(f"invalid merge request: {exc}") from exc
        for ref in (*request.models, *([request.base] if request.base else [])):
            await models.model(tenant, ref.name, ref.version, ref.owner)
        return await command_jobs.submit(tenant, model_v1.MERGE_REQUESTED, request, webhook_url=data.webhook_url)
