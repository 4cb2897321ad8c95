"""The OpenAPI document, as the gateway really answers. Litestar writes each operation from its
handler's signature; `document` adds what a signature cannot say:

- every refusal an operation can answer, as `application/problem+json` with the stable `code`s it
  can carry (an `enum`, or `examples` where a code is decided at run time, e.g. a failed job's),
  and `Retry-After` where it is sent (429 and 503 always: problems.py);
- its other success statuses, the headers it sends (`Location`, `ETag`, `Idempotent-Replayed`),
  a file or an event stream instead of JSON, the raw body it reads itself (bodies.py);
- which operations need no API key (those whose handler does not ask for the `tenant`).

What an operation can refuse is the union of what its handler declares (answers.py: what its own
code raises) and what the route implies: the parts it asks for (`PARTS`), its parameters and body
(litestar's own 400, 404 and 413), the admission guard (shedding.py) and the idempotency layer
(idempotent_requests.py). tests/services/gateway/test_openapi.py holds the union to every error
the handler's code can make.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import Any

from litestar import Litestar
from litestar.enums import ParamType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.routes import HTTPRoute

from maskline.services.gateway.core import auth, idempotent_requests, shedding
from maskline.services.gateway.core.answers import ANSWERS, BINARY, ETAG, LOCATION, Answers, Refusal
from maskline.services.gateway.core.bodies import RAW_BODY, STREAMED_BODY, RawBody
from maskline.services.gateway.core.errors import BadRequest, NotFound, PayloadTooLarge, Unavailable
from maskline.services.gateway.core.intake import ADMISSION_REFUSALS
from maskline.services.gateway.core.model_lookup import REFUSALS as MODEL_LOOKUP_REFUSALS
from maskline.services.gateway.core.problems import PROBLEM_MEDIA_TYPE
from maskline.services.gateway.tracking.webhook_settings import JOB_WEBHOOK_REFUSALS
from maskline.shared.jobs.idempotency import MAX_KEY_LENGTH

PROBLEM = Schema(
    type=OpenAPIType.OBJECT,
    required=["status", "title", "code"],
    properties={
        "type": Schema(type=OpenAPIType.STRING, description="https://maskline.dev/problems/<code>"),
        "title": Schema(type=OpenAPIType.STRING),
        "status": Schema(type=OpenAPIType.INTEGER),
        "detail": Schema(type=OpenAPIType.STRING, description="What went wrong, for a person"),
        "code": Schema(type=OpenAPIType.STRING, description="Stable machine-readable reason, e.g. image_too_large"),
    },
    description="RFC 9457 problem details with a stable `code`",
)
PROBLEM_REF = Reference(ref="#/components/schemas/Problem")

_BUS = Unavailable.coded("bus_unavailable")
# A key outside what the gateway may read answers 404 (problems.py).
_STORE = Unavailable.coded("store_unavailable") + NotFound.coded("not_found")

#: What a route may refuse because its handler asks for a part (app.py registers them by these
#: names): what the part raises itself, and what problems.py answers when the dependency behind it
#: is down (the bus: 503 `bus_unavailable`; the object store: 503 `store_unavailable`).
PARTS: dict[str, tuple[Refusal, ...]] = {
    "tenant": auth.REFUSALS,
    "caller": auth.REFUSALS,
    "identities": (),
    "accounts": _BUS,
    "sessions": _BUS,
    "passwords": (),
    "sign_ins": _BUS,
    "sign_in_starts": (),
    "failed_sign_ins": (),
    "bus": _BUS,
    "store": _STORE,
    "job_store": _BUS,
    "registry": _BUS,
    "grants": _BUS,
    "shadows": _BUS,
    "quality": _BUS,
    "fences": _BUS,
    "cancellations": _BUS,
    "idempotency": _BUS,
    "waiters": _BUS,
    "webhooks": _BUS,
    "admission": _BUS,
    "models": _BUS + MODEL_LOOKUP_REFUSALS,
    "intake": _BUS,
    "command_jobs": _BUS + JOB_WEBHOOK_REFUSALS,
    "segmentation_jobs": _BUS + _STORE + ADMISSION_REFUSALS,
    "alias_changes": auth.REFUSALS + _BUS + _STORE + MODEL_LOOKUP_REFUSALS,
    "tenants_by_key": (),
    "failed_keys": (),
    "settings": (),
    "readiness": (),
    "platform_metrics": (),
    "fresh_job_id": (),
}

_TEXT = Schema(type=OpenAPIType.STRING)
_COUNT = Schema(type=OpenAPIType.INTEGER, minimum=0)
#: Headers an answer may carry: their schema and what they say.
HEADERS: dict[str, tuple[Schema, str]] = {
    LOCATION: (_TEXT, "Where to follow the job, or find what was made"),
    ETAG: (_TEXT, "The file's sha256, quoted"),
    "Retry-After": (Schema(type=OpenAPIType.INTEGER, minimum=1), "Seconds to wait before trying again"),
    "Idempotent-Replayed": (
        Schema(type=OpenAPIType.STRING, enum=["true"]),
        "This is the answer kept for the request's Idempotency-Key, sent again: the work was not done twice",
    ),
    "Content-Disposition": (_TEXT, "The file's name: `attachment; filename=...`"),
    "X-Round": (_COUNT, "The federated round the model is for"),
    "X-Pixels-Differ": (_COUNT, "Pixels where the two masks differ"),
    "Inference-Header-Content-Length": (_COUNT, "Bytes of JSON before the binary tensor data (binary-data extension)"),
}
IDEMPOTENCY_KEY = Parameter(
    name="Idempotency-Key",
    param_in=ParamType.HEADER,
    required=False,
    schema=Schema(type=OpenAPIType.STRING, min_length=1, max_length=MAX_KEY_LENGTH),
    description="Send the same request again with the same key: it is done once, and its answer sent again",
)


def document(app: Litestar) -> OpenAPI:
    """Complete the app's OpenAPI document (in place) with what each operation answers."""
    openapi = app.openapi_schema
    components = openapi.components if isinstance(openapi.components, Components) else Components()
    components.schemas = {**(components.schemas or {}), "Problem": PROBLEM}
    openapi.components = components
    for path, method, handler in operations(app):
        item = (openapi.paths or {})[path]
        _document(getattr(item, method), handler, method)
    unions_as_any_of(openapi)
    return openapi


def unions_as_any_of(node: Any) -> None:
    """litestar writes a Python union as `oneOf`, which demands that exactly one branch match: an
    `int | float` field's 4 matches both and fails (schemathesis found it on `Architecture.kwargs`).
    A union of types is `anyOf`: every schema of the document, wherever it stands, is rewritten."""
    if isinstance(node, Schema) and node.one_of:
        node.any_of, node.one_of = [*(node.any_of or ()), *node.one_of], None
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for field in dataclasses.fields(node):
            unions_as_any_of(getattr(node, field.name))
    elif isinstance(node, dict):
        for value in node.values():
            unions_as_any_of(value)
    elif isinstance(node, list | tuple):
        for value in node:
            unions_as_any_of(value)


def operations(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    """(path as the document names it, method, handler) of every operation in the document."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.resolve_include_in_schema():
                for method in sorted(handler.http_methods):
                    yield route.path_format, method.lower(), handler


def refusals_of(handler: HTTPRouteHandler, operation: Operation, method: str) -> list[Refusal]:
    """Everything the operation may refuse with: declared by its handler, implied by its route."""
    answers: Answers = handler.opt.get(ANSWERS) or Answers()
    found = list(answers.refusals)
    for name in handler.parsed_fn_signature.parameters:
        found += PARTS.get(name, ())
    params = list(operation.parameters or [])
    parsed_body = operation.request_body is not None  # what litestar reads and checks (JSON, a form)
    if parsed_body or any(_where(p) in (ParamType.QUERY, ParamType.HEADER, ParamType.COOKIE) for p in params):
        found += BadRequest.coded("invalid_request")
    if any(_where(p) == ParamType.PATH for p in params):
        found += NotFound.coded("not_found")  # a path parameter that does not parse matches no route
    if (parsed_body or RAW_BODY in handler.opt) and STREAMED_BODY not in handler.opt:
        found += PayloadTooLarge.coded("too_large")  # over the app's limit (MASKLINE_MAX_UPLOAD_BYTES)
    if handler.opt.get(shedding.ADMITTED):
        found += shedding.REFUSALS
    if idempotent_requests.layered(handler, method):
        found += idempotent_requests.REFUSALS
    return found


def _where(parameter: Parameter | Reference) -> str | None:
    return parameter.param_in if isinstance(parameter, Parameter) else None


def _document(operation: Operation, handler: HTTPRouteHandler, method: str) -> None:
    answers: Answers = handler.opt.get(ANSWERS) or Answers()
    refusals = refusals_of(handler, operation, method)  # before the raw body and the key join the request
    layered = idempotent_requests.layered(handler, method)
    raw: RawBody | None = handler.opt.get(RAW_BODY)
    if raw is not None:
        content = {kind: OpenAPIMediaType(schema=schema) for kind, schema in raw.media.items()}
        operation.request_body = RequestBody(content=content, required=True, description=raw.description)
        operation.parameters = [*(operation.parameters or []), *raw.headers]
    if layered:
        operation.parameters = [*(operation.parameters or []), IDEMPOTENCY_KEY]
    headers = dict(answers.headers)
    if "command_jobs" in handler.parsed_fn_signature.parameters:  # CommandJobs.submit answers where to follow the job
        headers[LOCATION] = True
    if layered:
        headers["Idempotent-Replayed"] = False
    responses = _successes(operation, handler, answers, headers)
    responses.update(_refused(refusals, replayed=layered))
    responses["5XX"] = _problem("The platform failed to answer (500 `internal`); a proxy may answer 502 or 504")
    operation.responses = responses
    if not {"tenant", "caller"} & set(handler.parsed_fn_signature.parameters):
        operation.security = []  # the handler never asks who is calling: no API key needed


def _successes(
    operation: Operation, handler: HTTPRouteHandler, answers: Answers, headers: dict[str, bool]
) -> dict[str, OpenAPIResponse | Reference]:
    status = str(handler.status_code)
    found = (operation.responses or {}).get(status)
    success = found if isinstance(found, OpenAPIResponse) else OpenAPIResponse(description=HTTPStatus(int(status)).phrase)
    if answers.files:
        success.description = "The file's bytes"
        success.content = {kind: OpenAPIMediaType(schema=_file_schema(kind)) for kind in answers.files}
    if answers.events is not None:
        success.description = "A stream of server-sent events"
        success.content = {"text/event-stream": OpenAPIMediaType(schema=answers.events)}
    success.headers = {name: _header(name, required) for name, required in headers.items()} or None
    answered: dict[str, OpenAPIResponse | Reference] = {status: success}
    for also, description in answers.also.items():
        answered[str(also)] = OpenAPIResponse(description=description, content=success.content, headers=success.headers)
    return answered


def _file_schema(media_type: str) -> Schema:
    # A JSON file is checked as JSON by clients (and schemathesis): any JSON, not a string of bytes.
    return Schema() if media_type == "application/json" else BINARY


def _header(name: str, required: bool) -> OpenAPIHeader:
    schema, description = HEADERS[name]
    return OpenAPIHeader(schema=schema, description=description, required=required)


def _refused(refusals: Iterable[Refusal], *, replayed: bool) -> dict[str, OpenAPIResponse | Reference]:
    by_status: dict[int, list[Refusal]] = {}
    for refusal in refusals:
        by_status.setdefault(refusal.status, []).append(refusal)
    answered: dict[str, OpenAPIResponse | Reference] = {}
    for status, group in sorted(by_status.items()):
        codes = sorted({r.code for r in group if r.code is not None})
        notes = sorted({r.note for r in group if r.code is None})
        if notes:  # some code is decided at run time: the known ones are examples, not the only ones
            code = Schema(type=OpenAPIType.STRING, examples=codes or None, description="; ".join(notes))
        else:
            code = Schema(type=OpenAPIType.STRING, enum=codes)
        words = ", ".join(f"`{c}`" for c in codes) + "".join(f"; {note}" for note in notes)
        response = _problem(f"{HTTPStatus(status).phrase}: {words}", Schema(properties={"code": code}))
        headers: dict[str, OpenAPIHeader | Reference] = {}
        if status in (429, 503) or any(r.retry_after for r in group):
            headers["Retry-After"] = _header("Retry-After", status in (429, 503) or all(r.retry_after for r in group))
        if replayed and status < 500 and status != 401 and status not in idempotent_requests.NOT_KEPT:
            headers["Idempotent-Replayed"] = _header("Idempotent-Replayed", False)
        response.headers = headers or None
        answered[str(status)] = response
    return answered


def _problem(description: str, narrowed: Schema | None = None) -> OpenAPIResponse:
    schema: Schema | Reference = Schema(all_of=[PROBLEM_REF, narrowed]) if narrowed is not None else PROBLEM_REF
    return OpenAPIResponse(description=description, content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=schema)})


def operation_id(handler: HTTPRouteHandler, method: Any, path_components: Any) -> str:
    """Readable operation ids for generated clients: `<tag><Handler>`, e.g. `segmentationsSubmit`,
    `modelsRegister` (the tag is the controller's resource)."""
    tags = handler.resolve_tags()
    resource = tags[0] if tags else "platform"
    words = [*resource.replace("-", "_").split("_"), *handler.handler_name.split("_")]
    return words[0].lower() + "".join(word.title() for word in words[1:])
