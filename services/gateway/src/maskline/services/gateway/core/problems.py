"""The one place errors become RFC 9457 problem+json responses, each with a stable `code`.

Our own errors (`errors.py`) carry their code. The framework's (a malformed body, an unknown
route, a body over the limit) get one from their status. A dependency that is down (NATS) is a
503 with Retry-After; anything unexpected is a 500 that says nothing about the internals and is
logged with its traceback.
"""

from __future__ import annotations

import math
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin

from maskline.services.gateway.core.errors import GatewayError
from maskline.shared.bus import BUS_UNAVAILABLE
from maskline.shared.errors import DependencyUnavailable, public_reason
from maskline.shared.storage import StoreAccessDenied

PROBLEM_TYPE = "https://maskline.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_S = 2
log = structlog.get_logger("gateway")

#: Codes of the framework's own refusals, by status.
STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("unprocessable", "Unprocessable"),
    429: ("too_many_requests", "Too many requests"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}


def problem(
    status: int,
    detail: str,
    code: str | None = None,
    *,
    title: str | None = None,
    retry_after_s: float | None = None,
    **extra: Any,
) -> ProblemDetailsException:
    default_code, default_title = STATUS_CODES.get(status, ("error", "Error"))
    code = code or default_code
    retry = retry_after_s if retry_after_s is not None else (RETRY_AFTER_S if status in (429, 503) else None)
    return ProblemDetailsException(
        detail=public_reason(detail),
        status_code=status,
        title=title or default_title,
        type_=PROBLEM_TYPE + code,
        extra={"code": code, **extra},
        headers={"Retry-After": str(max(1, math.ceil(retry)))} if retry is not None else None,
    )


def _from_gateway(exc: GatewayError) -> ProblemDetailsException:
    return problem(exc.status, exc.detail, exc.code, title=exc.title, retry_after_s=exc.retry_after_s)


def _from_framework(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else []
        return problem(400, f"invalid request: {exc.detail}", "invalid_request", errors=errors)
    return problem(exc.status_code, str(exc.detail), None)


def _from_anything(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, BUS_UNAVAILABLE):
        unavailable = problem(
            503, f"the message bus is not reachable now ({type(exc).__name__}); retry shortly", "bus_unavailable"
        )
        return unavailable.to_response(request)
    if isinstance(exc, DependencyUnavailable):  # the object store, Triton: nothing was accepted
        log.warning("http.dependency_unavailable", path=request.url.path, dependency=exc.dependency, reason=exc.reason)
        return problem(503, f"the {exc.dependency} is not reachable now; retry shortly", exc.code).to_response(request)
    if isinstance(exc, StoreAccessDenied):  # a key outside what the gateway may read: nothing of ours to show
        log.warning("http.store_access_denied", path=request.url.path, reason=str(exc))
        return problem(404, "no such object", "not_found").to_response(request)
    if isinstance(exc, UnicodeDecodeError):  # litestar decodes a form's text parts before any handler runs
        detail = "the request has a text part (a form field without a file name) that is not UTF-8"
        return problem(400, detail, "invalid_request").to_response(request)
    log.error("http.unhandled", path=request.url.path, method=request.method, exc_info=exc)
    return problem(500, "the request failed inside the gateway; it was logged", "internal").to_response(request)


def _subclasses(cls: type[GatewayError]) -> list[type[GatewayError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


def plugin() -> ProblemDetailsPlugin:
    mapping: dict[type[Exception], Any] = {cls: _from_gateway for cls in _subclasses(GatewayError)}
    mapping[HTTPException] = _from_framework
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(enable_for_all_http_exceptions=True, exception_to_problem_detail_map=mapping)
    )


def catch_all() -> dict[int | type[Exception], Any]:
    """App-level handlers for what no more specific handler takes (litestar looks them up by MRO)."""
    handlers: dict[int | type[Exception], Any] = {Exception: _from_anything}
    return handlers
