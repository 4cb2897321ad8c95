"""The one place errors become RFC 9457 problem+json responses."""

from __future__ import annotations

from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin

from maskline.services.gateway.errors import GatewayError

PROBLEM_TYPE = "https://maskline.dev/problems/"


def _to_problem(exc: GatewayError) -> ProblemDetailsException:
    return ProblemDetailsException(
        detail=exc.detail,
        status_code=exc.status,
        title=exc.title,
        type_=PROBLEM_TYPE + exc.code,
        extra={"code": exc.code},
    )


def _subclasses(cls: type[GatewayError]) -> list[type[GatewayError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found


def plugin() -> ProblemDetailsPlugin:
    mapping = {cls: _to_problem for cls in _subclasses(GatewayError)}
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(enable_for_all_http_exceptions=True, exception_to_problem_detail_map=mapping)
    )
