"""Liveness and readiness of the gateway (no API key needed)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get

from maskline.services.gateway.core.context import GatewayContext


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="The process answers")
    async def live(self) -> dict[str, str]:
        return {"status": "live"}

    @get("/ready", summary="NATS and the object store are usable")
    async def ready(self, ctx: GatewayContext) -> Response[dict[str, Any]]:
        checks = await ctx.runtime.readiness()
        ok = all(checks.values())
        return Response({"ready": ok, "checks": checks}, status_code=200 if ok else 503)
