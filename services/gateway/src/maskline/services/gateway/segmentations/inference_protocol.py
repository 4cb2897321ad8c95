"""The Open Inference Protocol (KServe v2, as Triton speaks it) on the gateway, so `tritonclient`,
the KServe SDK or any v2 client can segment through maskline — behind the same API keys, tenancy,
admission and audit as the REST API, because an inference here *is* a segmentation job.

- `GET /v2`, `/v2/health/live`, `/v2/health/ready`;
- `GET /v2/models/{name}[/versions/{v}]` (metadata) and `.../ready`;
- `POST /v2/models/{name}[/versions/{v}]/infer`, JSON or with the binary-data extension
  (`Inference-Header-Content-Length`).

A model takes one input, `IMAGE`: an encoded image file as BYTES, shape [1], or raw RGB pixels as
UINT8, shape [H, W, 3]. It gives `MASK` (UINT8 [H, W], class index per pixel) and `REGIONS` (BYTES
[1], the regions JSON). The job behind an inference is in the response's `parameters.job_id` and in
the audit trail like any other. Errors carry the protocol's `error` member beside problem+json's.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from types import TracebackType
from typing import Any

import numpy as np
from litestar import Controller, Request, Response, get, post
from litestar.enums import ParamType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import Parameter, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.types import Method
from litestar.types.internal_types import PathParameterDefinition
from PIL import Image

from maskline.contracts import seg_v1
from maskline.contracts.envelope import new_job_id
from maskline.services.gateway.core.answers import ANSWERS, BINARY, OCTETS, Answers
from maskline.services.gateway.core.bodies import RAW_BODY, RawBody
from maskline.services.gateway.core.errors import BadRequest, GatewayError, Unavailable
from maskline.services.gateway.core.idempotent_requests import IDEMPOTENCY, UNKEYED
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.problems import problem
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.segmentations.submission import UPLOAD_REFUSALS, SegmentationJobs, Upload, check_upload
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.job_routes import artifact_bytes
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.shared.bus import Bus
from maskline.shared.version import CODE_VERSION

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT = "IMAGE"
OUTPUTS = ("MASK", "REGIONS")
_OBJECT = Schema(type=OpenAPIType.OBJECT)
_TENSOR = Schema(
    type=OpenAPIType.OBJECT,
    required=["name", "datatype", "shape"],
    properties={
        "name": Schema(type=OpenAPIType.STRING),
        "datatype": Schema(type=OpenAPIType.STRING),
        "shape": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.INTEGER)),
        "data": Schema(type=OpenAPIType.ARRAY),
        "parameters": _OBJECT,
    },
)
#: The request's body, for the OpenAPI document: the protocol's JSON, or that JSON followed by the
#: tensors' bytes (the binary-data extension, framed by `Inference-Header-Content-Length`).
INFER_BODY = RawBody(
    f"A v2 inference request: one input, {INPUT} (BYTES [1]: an image file, as binary data; or UINT8 [H, W, 3])",
    {
        "application/json": Schema(
            type=OpenAPIType.OBJECT,
            required=["inputs"],
            properties={
                "id": Schema(type=OpenAPIType.STRING),
                "inputs": Schema(type=OpenAPIType.ARRAY, items=_TENSOR),
                "outputs": Schema(type=OpenAPIType.ARRAY, items=_OBJECT),
                "parameters": _OBJECT,
            },
        ),
        OCTETS: BINARY,
    },
    headers=(
        Parameter(
            name=HEADER_LENGTH,
            param_in=ParamType.HEADER,
            required=False,
            schema=Schema(type=OpenAPIType.INTEGER, minimum=0),
            description="With binary data: the bytes of JSON before it",
        ),
    ),
)


class protocol_errors:
    """Our errors as problem+json with the protocol's `error` member (what v2 clients print)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if isinstance(exc, GatewayError):
            raise problem(
                exc.status, exc.detail, exc.code, title=exc.title, retry_after_s=exc.retry_after_s, error=exc.detail
            ) from exc


def _operation_id(handler: HTTPRouteHandler, method: Method, path: list[str | PathParameterDefinition]) -> str:
    """`inference<Handler>`, and `...Version` for the versioned path (one handler serves both)."""
    versioned = any(not isinstance(part, str) and part.name == "version" for part in path)
    return "inference" + "".join(word.title() for word in handler.handler_name.split("_")) + ("Version" if versioned else "")


def _model_metadata(name: str, versions: list[int], labels: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": "maskline_segmentation",
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [1]}],
        "outputs": [
            {"name": "MASK", "datatype": "UINT8", "shape": [-1, -1]},
            {"name": "REGIONS", "datatype": "BYTES", "shape": [1]},
        ],
        "parameters": {"labels": list(labels), "image_as_uint8": "also accepted: IMAGE as UINT8 [H, W, 3] (RGB)"},
    }


def _split_binary(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        return dict(json.loads(body)), b""
    try:
        size = int(header_length)
        return dict(json.loads(body[:size])), body[size:]
    except (ValueError, json.JSONDecodeError) as exc:
        raise BadRequest(f"{HEADER_LENGTH} does not frame a JSON header: {exc}", code="invalid_request") from exc


def _image_from(request: dict[str, Any], binary: bytes) -> tuple[bytes, str]:
    """The encoded image and its content type, from the IMAGE input (BYTES file or UINT8 pixels)."""
    inputs = request.get("inputs") or []
    tensor = next((t for t in inputs if isinstance(t, dict) and t.get("name") == INPUT), None)
    if tensor is None or len(inputs) != 1:
        raise BadRequest(f"one input is expected, named {INPUT}", code="invalid_request")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    datatype, shape = tensor.get("datatype"), list(tensor.get("shape") or [])
    if datatype == "BYTES":
        if size is not None:  # the binary extension: each element is a 4-byte little-endian length, then the bytes
            raw = binary[: int(size)]
            length = struct.unpack("<I", raw[:4])[0] if len(raw) >= 4 else -1
            if length != len(raw) - 4:
                raise BadRequest("IMAGE must be one BYTES element (an encoded image file)", code="invalid_request")
            return raw[4:], "application/octet-stream"
        # JSON carries BYTES as text, which an image file is not: send it as binary data, or as UINT8 pixels.
        raise BadRequest("IMAGE as BYTES needs the binary-data extension (or send UINT8 [H, W, 3])", code="invalid_request")
    if datatype == "UINT8" and len(shape) == 3 and shape[2] == 3:
        if size is not None:
            pixels = np.frombuffer(binary[: int(size)], dtype=np.uint8)
        else:
            pixels = np.asarray(tensor.get("data") or [], dtype=np.uint8)
        if pixels.size != shape[0] * shape[1] * 3:
            raise BadRequest(f"IMAGE holds {pixels.size} values, not {shape[0]}x{shape[1]}x3", code="invalid_request")
        buf = io.BytesIO()
        Image.fromarray(pixels.reshape(shape)).save(buf, format="PNG")
        return buf.getvalue(), "image/png"
    raise BadRequest("IMAGE must be BYTES [1] (an image file) or UINT8 [H, W, 3] (RGB)", code="invalid_request")


def _wanted(request: dict[str, Any]) -> dict[str, bool]:
    """Output name → sent as binary data; all outputs, as JSON, when none are named."""
    binary_default = bool((request.get("parameters") or {}).get("binary_data_output", False))
    asked = request.get("outputs")
    if not asked:
        return dict.fromkeys(OUTPUTS, binary_default)
    wanted = {}
    for output in asked:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise BadRequest(f"unknown output {name!r}: {', '.join(OUTPUTS)}", code="invalid_request")
        wanted[name] = bool((output.get("parameters") or {}).get("binary_data", binary_default))
    return wanted


def _response(body: dict[str, Any], blobs: list[bytes]) -> Response[bytes]:
    header = json.dumps(body).encode()
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(blobs), media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(header))})


class InferenceProtocolController(Controller):
    path = "/v2"
    tags = ["inference"]

    @get(summary="Server metadata (Open Inference Protocol)")
    async def server(self) -> dict[str, Any]:
        return {"name": "maskline", "version": CODE_VERSION, "extensions": ["binary_tensor_data"]}

    @get("/health/live", summary="The gateway answers")
    async def live(self) -> dict[str, Any]:
        return {"live": True}

    @get("/health/ready", summary="The gateway can take inferences (the bus is reachable)")
    async def ready(self, bus: Bus) -> dict[str, Any]:
        with protocol_errors():
            if not bus.nc.is_connected:
                raise Unavailable("the message bus is not reachable now; retry shortly", code="bus_unavailable")
        return {"ready": True}

    @get(
        ["/models/{name:str}", "/models/{name:str}/versions/{version:int}"],
        summary="A segmentation model's metadata",
        operation_id=_operation_id,
    )
    async def model(self, models: ModelLookup, tenant: str, name: str, version: int | None = None) -> dict[str, Any]:
        with protocol_errors():
            model = await models.model(tenant, name, version)
            versions = [version] if version is not None else [model.version]
            return _model_metadata(name, versions, model.labels)

    @get(
        ["/models/{name:str}/ready", "/models/{name:str}/versions/{version:int}/ready"],
        summary="The model can be used",
        operation_id=_operation_id,
    )
    async def model_ready(self, models: ModelLookup, tenant: str, name: str, version: int | None = None) -> dict[str, Any]:
        with protocol_errors():
            await models.model(tenant, name, version)
        return {"name": name, "ready": True}

    @post(
        ["/models/{name:str}/infer", "/models/{name:str}/versions/{version:int}/infer"],
        status_code=200,
        summary="Segment an image (a job like POST /v1/segmentations, waited for)",
        operation_id=_operation_id,
        opt={
            RAW_BODY: INFER_BODY,
            # Its clients (tritonclient, KServe's) send no key, and its answer is the mask itself: too large to keep.
            IDEMPOTENCY: UNKEYED,
            ANSWERS: Answers(
                refusals=UPLOAD_REFUSALS
                + BadRequest.coded("invalid_request", others="the failed inference job's own `code`")
                + Unavailable.coded("still_running"),
                files=("application/json", OCTETS),
                headers={HEADER_LENGTH: False},
            ),
        },
    )
    async def infer(
        self,
        intake: Intake,
        models: ModelLookup,
        settings: GatewaySettings,
        store: Store,
        waiters: CompletionWaiters,
        segmentation_jobs: SegmentationJobs,
        tenant: str,
        request: Request[Any, Any, Any],
        name: str,
        version: int | None = None,
    ) -> Response[bytes]:
        with protocol_errors():
            intake.require_bus()
            try:
                payload, binary = _split_binary(await request.body(), request.headers.get(HEADER_LENGTH))
                wanted = _wanted(payload)
                image, content_type = _image_from(payload, binary)
            except (TypeError, ValueError, KeyError, AttributeError, struct.error) as exc:
                raise BadRequest(f"not an inference request of the protocol: {exc}", code="invalid_request") from exc
            model = await models.model(tenant, name, version)
            options = seg_v1.SegmentationOptions(
                model=name, version=model.version, owner=model.owner or None, outputs=("mask", "regions")
            )
            await check_upload(settings, image, options)
            job_id = new_job_id()
            upload = Upload(image, hashlib.sha256(image).hexdigest(), "inference.png", content_type)
            with waiters.watching(tenant, job_id) as finished:
                state = await segmentation_jobs.start(tenant, job_id, upload, options)
                state = await waiters.result(tenant, job_id, finished, settings.max_wait_s) or state
            if state.status == "failed" and state.error is not None:
                raise BadRequest(f"inference {job_id} failed in {state.error.stage}: {state.error.reason}", code=state.error.code)
            if state.status != "completed":
                raise Unavailable(f"inference {job_id} is still running after {settings.max_wait_s:.0f} s", code="still_running")
            mask = np.asarray(Image.open(io.BytesIO(await artifact_bytes(store, state, "mask"))), dtype=np.uint8)
            regions = await artifact_bytes(store, state, "regions")
            outputs, blobs = [], []
            for out_name, as_binary in wanted.items():
                if out_name == "MASK":
                    datatype, shape, raw = "UINT8", list(mask.shape), mask.tobytes()
                else:  # BYTES in the binary extension: a 4-byte little-endian length, then the bytes
                    datatype, shape, raw = "BYTES", [1], struct.pack("<I", len(regions)) + regions
                entry: dict[str, Any] = {"name": out_name, "datatype": datatype, "shape": shape}
                if as_binary:
                    entry["parameters"] = {"binary_data_size": len(raw)}
                    blobs.append(raw)
                else:
                    entry["data"] = mask.reshape(-1).tolist() if out_name == "MASK" else [regions.decode()]
                outputs.append(entry)
            body = {
                "model_name": name,
                "model_version": str(model.version),
                "id": str(payload.get("id", "")),
                "parameters": {"job_id": job_id},
                "outputs": outputs,
            }
            return _response(body, blobs)
