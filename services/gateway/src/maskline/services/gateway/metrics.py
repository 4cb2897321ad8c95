"""`/metrics`: the platform's Prometheus metrics (see `telemetry.py`)."""

from __future__ import annotations

from litestar import Controller, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from maskline.services.gateway.context import GatewayContext


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operations"]

    @get(summary="Prometheus metrics (no API key: scrape from inside the network)", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self, ctx: GatewayContext) -> Response[bytes]:
        await ctx.metrics.refresh(ctx.runtime.bus.js)
        state = ctx.admission.gauges()
        ctx.metrics.backlog.set(await ctx.admission.backlog.size())
        ctx.metrics.tenant_jobs.clear()
        for tenant, count in state["running"].items():
            ctx.metrics.tenant_jobs.labels(tenant).set(count)
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)
