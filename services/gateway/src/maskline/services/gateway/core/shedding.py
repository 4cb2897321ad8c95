"""Refuse a job submission over the admission limits before its body is read.

Under overload most requests are refused, so a refusal must cost next to nothing: this guard runs
before Litestar parses the multipart body, and answers 503 / 429 from the admission state alone
(no bus round trip, nothing taken). Requests it lets through are admitted for real in the handler,
which takes the rate token and counts the job. A request with an Idempotency-Key is shed like any
other (every client sends one with every POST now): a retry of a job admitted before is answered
once the limits allow, with that job, never a second one; refusing it here only delays it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard, Scope

from maskline.services.gateway.core.errors import Unavailable
from maskline.services.gateway.core.intake import ADMISSION_REFUSALS, Intake

#: Route option naming the handlers that create jobs: `@post(..., opt={ADMITTED: True})`.
ADMITTED = "admitted"
#: What this guard answers (the OpenAPI document of every route it guards: openapi.py).
REFUSALS = Unavailable.coded("bus_unavailable") + ADMISSION_REFUSALS


def shed_over_limits(tenant_of: Callable[[Scope], Awaitable[str | None]], intake: Callable[[], Intake]) -> Guard:
    """`tenant_of` tells the tenant a request acts for (auth.Identities); `intake` is read at each
    request, as the app's dependencies are (app.py)."""

    async def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        if not handler.opt.get(ADMITTED):
            return
        tenant = await tenant_of(connection.scope)
        if tenant is None:
            return  # the handler answers 401
        checks = intake()
        checks.require_bus()
        await checks.check_admission(tenant)

    return guard
