"""Liveness and readiness of the gateway (no API key needed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from litestar import Controller, Response, get

from maskline.services.gateway.core.answers import ANSWERS, Answers

#: The runtime's checks (NATS, the object store, consumers not paused), each true or false.
Readiness: TypeAlias = Callable[[], Awaitable[dict[str, bool]]]


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="The process answers")
    async def live(self) -> dict[str, str]:
        return {"status": "live"}

    @get(
        "/ready",
        summary="NATS and the object store are usable",
        opt={ANSWERS: Answers(also={503: "Not ready: the same checks, one of them false"})},
    )
    async def ready(self, readiness: Readiness) -> Response[dict[str, Any]]:
        checks = await readiness()
        ok = all(checks.values())
        return Response({"ready": ok, "checks": checks}, status_code=200 if ok else 503)
