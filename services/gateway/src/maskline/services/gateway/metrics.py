"""`/metrics`: the platform's Prometheus metrics (see `telemetry.py`), then this replica's own —
its HTTP requests (litestar's Prometheus middleware, by route template) and its process — from
prometheus_client's default registry."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from maskline.services.gateway.context import GatewayContext

#: Requests by method, route template (not the raw path: bounded) and status; paths no route
#: answers are not counted, so a scan of random URLs adds no series.
HTTP_METRICS = PrometheusConfig(
    app_name="maskline-gateway",
    prefix="maskline_http",
    group_path=True,
    exclude_unhandled_paths=True,
    exclude=["/metrics", "/health"],
    buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0],
)


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
        body = generate_latest(ctx.metrics.registry) + generate_latest(REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
