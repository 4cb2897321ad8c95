"""The gateway's OpenAPI document says what the gateway answers: read off the assembled app, as it
serves the document (no servers). Every refusal is problem+json with the codes it can carry, each
operation lists every error its code can make (read off the code: raised.py), and the headers,
raw bodies and the event stream are as sent. tests/e2e/test_openapi_conformance.py checks sampled
answers of a running stack against it (schemathesis)."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from functools import cache
from types import SimpleNamespace
from typing import Any

import pytest
from litestar.handlers import HTTPRouteHandler
from litestar.testing import TestClient
from openapi_spec_validator import OpenAPIV31SpecValidator

from maskline.contracts.subjects import FINAL_STATUSES
from maskline.infra import error_codes
from maskline.services.gateway.core import openapi, problems
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.app import create_app
from maskline.services.gateway.core.auth import provide_caller
from maskline.services.gateway.core.bodies import RAW_BODY
from maskline.services.gateway.core.errors import GatewayError
from maskline.services.gateway.core.idempotent_requests import idempotent_posts, layered
from maskline.services.gateway.core.intake import ADMISSION_REFUSALS
from maskline.services.gateway.core.shedding import ADMITTED, shed_over_limits
from maskline.services.gateway.settings import GatewaySettings
from tests.services.gateway.raised import Raised, admission_refusals, raised_by

pytestmark = pytest.mark.unit

PROBLEM = "application/problem+json"
#: The readiness probe answers 503 with its checks, as JSON like its 200: what probes read.
PLAIN_JSON_REFUSALS = {("get", "/health/ready", "503")}
#: Handlers that read their body themselves, as their code says.
READS_ITS_BODY = re.compile(r"request\.body\(\)|request\.stream\(\)|limited\(request")


@cache
def app() -> Any:
    return create_app(SimpleNamespace(settings=GatewaySettings()))  # type: ignore[arg-type]


@cache
def served() -> dict[str, Any]:
    """The document as a client reads it (`GET /schema/openapi.json`)."""
    with TestClient(app()) as client:
        response = client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def operations() -> list[tuple[str, str, HTTPRouteHandler, dict[str, Any]]]:
    doc = served()
    return [(path, method, handler, doc["paths"][path][method]) for path, method, handler in openapi.operations(app())]


def ids(found: list[tuple[str, str, HTTPRouteHandler, dict[str, Any]]]) -> list[str]:
    return [f"{method.upper()} {path}" for path, method, _, _ in found]


@dataclass
class Documented:
    codes: set[str] = field(default_factory=set)
    open: bool = False
    """Some code is decided at run time: the listed ones are examples."""


def documented(operation: dict[str, Any]) -> dict[int, Documented]:
    """Status → the codes its problem+json says it carries."""
    found: dict[int, Documented] = {}
    for status, response in operation["responses"].items():
        schema = response.get("content", {}).get(PROBLEM, {}).get("schema")
        if not status.isdigit() or schema is None:
            continue
        (narrowed,) = [part for part in schema["allOf"] if "$ref" not in part]
        code = narrowed["properties"]["code"]
        found[int(status)] = Documented(set(code.get("enum", code.get("examples", []))), "enum" not in code)
    return found


def raised(method: str, handler: HTTPRouteHandler) -> set[Raised]:
    """Every error the operation's code can make: its handler's, and the layers' before it."""
    found = raised_by(handler.fn)
    if {"tenant", "caller"} & set(handler.parsed_fn_signature.parameters):
        found |= raised_by(provide_caller)
    if handler.opt.get(ADMITTED):
        found |= raised_by(shed_over_limits)
    if layered(handler, method):
        found |= raised_by(idempotent_posts)
    return found


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = served()
    assert doc["openapi"].startswith("3.1")
    OpenAPIV31SpecValidator(doc).validate()
    assert len(operations()) >= 70


def test_no_error_is_documented_as_plain_json() -> None:
    """Litestar documents its own 400 as JSON; the gateway sends every refusal as problem+json."""
    wrong = []
    for path, method, _, operation in operations():
        for status, response in operation["responses"].items():
            media_types = set(response.get("content", {}))
            if status[0] in "45" and (method, path, status) not in PLAIN_JSON_REFUSALS and media_types != {PROBLEM}:
                wrong.append((method, path, status, sorted(media_types)))
    assert wrong == []


def test_every_refusal_names_the_codes_it_can_carry() -> None:
    for path, method, _, operation in operations():
        refusals = {s for s in operation["responses"] if s[0] in "45" and (method, path, s) not in PLAIN_JSON_REFUSALS}
        assert refusals - {"5XX"} == {str(s) for s in documented(operation)}, (method, path)
        assert "5XX" in refusals, (method, path)
        for status, said in documented(operation).items():
            assert said.codes or said.open, (method, path, status)


def test_each_operation_documents_every_error_its_code_can_make() -> None:
    """A new `raise SomeError(..., code=...)` in a handler (or in what it calls) fails here until the
    handler declares it (`opt={ANSWERS: Answers(refusals=...)}`, answers.py)."""
    missing = []
    for path, method, handler, operation in operations():
        said = documented(operation)
        for error in raised(method, handler):
            at = said.get(error.status)
            if at is None or (error.code is None and not at.open) or (error.code is not None and error.code not in at.codes):
                missing.append((f"{method.upper()} {path}", error.status, error.code, error.where))
            elif error.retry_after and "Retry-After" not in operation["responses"][str(error.status)].get("headers", {}):
                missing.append((f"{method.upper()} {path}", error.status, "Retry-After", error.where))
    assert missing == [], "\n".join(map(str, sorted(missing, key=str)))


def test_what_a_handler_declares_its_code_can_make() -> None:
    """No stale declaration: each refusal a handler declares is one its code makes."""
    stale = []
    for path, method, handler, _ in operations():
        answers: Answers = handler.opt.get(ANSWERS) or Answers()
        made = {error.key for error in raised(method, handler)}
        stale += [(f"{method.upper()} {path}", r.status, r.code) for r in answers.refusals if (r.status, r.code) not in made]
    assert stale == []


def test_every_code_is_one_of_the_platforms() -> None:
    """A misspelt code in a declaration names nothing the gateway sends."""
    known = set(error_codes.codes()) | {code for code, _ in problems.STATUS_CODES.values()}
    known |= {cls.code for cls in problems._subclasses(GatewayError)}
    unknown = {
        (f"{method.upper()} {path}", status, code)
        for path, method, _, operation in operations()
        for status, said in documented(operation).items()
        for code in said.codes - known
    }
    assert unknown == set()


def test_every_part_says_what_it_may_answer() -> None:
    assert set(app().dependencies) == set(openapi.PARTS)


def test_admission_refusals_are_those_admission_makes() -> None:
    assert {(r.status, r.code) for r in ADMISSION_REFUSALS} == {r.key for r in admission_refusals()}


def test_every_post_through_the_idempotency_layer_documents_its_key_and_refusals() -> None:
    found = [o for o in operations() if layered(o[2], o[1])]
    assert len(found) >= 10, ids(found)
    for path, method, _, operation in found:
        where = f"{method.upper()} {path}"
        keys = [p for p in operation.get("parameters", []) if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        assert keys and keys[0]["schema"]["maxLength"] == 255, where
        said = documented(operation)
        assert "idempotency_key_in_progress" in said[409].codes, where
        assert "Retry-After" in operation["responses"]["409"]["headers"], where
        assert "idempotency_key_reused" in said[422].codes, where
        assert "invalid_idempotency_key" in said[400].codes, where
        successes = [r for s, r in operation["responses"].items() if s.startswith("2")]
        assert successes and all("Idempotent-Replayed" in r["headers"] for r in successes), where
    unlayered = [o for o in operations() if o[1] == "post" and not layered(o[2], o[1])]
    for path, method, _, operation in unlayered:  # they say why in their route (idempotent_requests.py)
        assert "Idempotent-Replayed" not in str(operation["responses"]), (method, path)


def test_429_and_503_say_when_to_retry() -> None:
    for path, method, _, operation in operations():
        for status, response in operation["responses"].items():
            if status in ("429", "503") and (method, path, status) not in PLAIN_JSON_REFUSALS:
                header = response.get("headers", {}).get("Retry-After")
                assert header and header["required"] and header["schema"]["type"] == "integer", (method, path, status)


def test_handlers_that_read_their_body_declare_it() -> None:
    """The six that read an image, weights or an inference request themselves: litestar cannot see it."""
    reading = [o for o in operations() if READS_ITS_BODY.search(inspect.getsource(o[2].fn))]
    declared = [o for o in operations() if RAW_BODY in o[2].opt]
    assert ids(reading) == ids(declared) and len(reading) >= 6, (ids(reading), ids(declared))
    for path, method, handler, operation in reading:
        body = operation["requestBody"]
        assert body["required"] and set(body["content"]) == set(handler.opt[RAW_BODY].media), (method, path)
        assert "413" in operation["responses"], (method, path)


def test_the_progress_stream_is_server_sent_events() -> None:
    (events,) = [o for o in operations() if o[0] == "/v1/jobs/{job_id}/events"]
    success = events[3]["responses"]["200"]["content"]
    assert set(success) == {"text/event-stream"}
    event = success["text/event-stream"]["schema"]
    assert set(event["properties"]["event"]["enum"]) == {"progress", *FINAL_STATUSES}
    data = event["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    assert data["contentSchema"] == {"$ref": "#/components/schemas/JobView"}
    assert "JobView" in served()["components"]["schemas"]


def test_answers_that_start_a_job_say_where_to_follow_it() -> None:
    def starts_a_job(handler: HTTPRouteHandler) -> bool:
        return '"Location"' in inspect.getsource(handler.fn) or "command_jobs" in handler.parsed_fn_signature.parameters

    starting = [o for o in operations() if starts_a_job(o[2])]
    assert len(starting) >= 8, ids(starting)
    for path, method, _, operation in starting:
        for status, response in operation["responses"].items():
            if status in ("201", "202"):
                assert response["headers"]["Location"]["required"], (method, path, status)


def test_downloads_name_their_version() -> None:
    """Downloads of stored outputs send their sha256 as the ETag."""
    downloading = [o for o in operations() if re.search(r"await download\(|\"ETag\"", inspect.getsource(o[2].fn))]
    assert len(downloading) >= 3, ids(downloading)
    for path, method, _, operation in downloading:
        assert "ETag" in operation["responses"]["200"]["headers"], (method, path)


def test_files_are_documented_as_files() -> None:
    artifact = served()["paths"]["/v1/segmentations/{job_id}/{artifact}"]["get"]["responses"]["200"]["content"]
    assert artifact["image/png"]["schema"] == {"type": "string", "format": "binary"}
    assert artifact["application/json"]["schema"] == {}  # the regions file is JSON, read as JSON


def test_operations_that_ask_for_no_tenant_need_no_key() -> None:
    for path, method, handler, operation in operations():
        asks = bool({"tenant", "caller"} & set(handler.parsed_fn_signature.parameters))
        assert (operation.get("security") != []) == asks, (method, path)
        signs_in = path == "/v1/sign-in"  # no key needed; a wrong password answers 401
        assert ("401" in operation["responses"]) == (asks or signs_in), (method, path)


def test_a_union_of_types_is_any_of_never_one_of() -> None:
    """`oneOf` fails a value that fits two branches (an `int | float` field's 4): schemathesis found
    `Architecture.kwargs` refused in a real answer of GET /v1/models."""
    text = repr(served())
    assert "'oneOf'" not in text and "'anyOf'" in text
