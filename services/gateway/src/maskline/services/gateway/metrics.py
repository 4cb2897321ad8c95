"""`/metrics`: the platform's Prometheus metrics (see `telemetry.py`; from the one replica holding
the `platform-metrics` lease), then this replica's own — its HTTP requests (litestar's Prometheus
middleware, by route template) and its process — from prometheus_client's default registry."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from maskline.services.gateway.context import GatewayContext
from maskline.shared.operations.metrics import BuildInfo

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

# This replica's own, in the process's default registry (with litestar's HTTP metrics and the process's)
PLATFORM_VIEW = Gauge(
    "maskline_platform_view", "1 on the gateway replica that exports the platform's metrics (one at a time), else 0"
)
REGISTRY.register(BuildInfo("gateway"))


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operations"]

    @get(summary="Prometheus metrics (no API key: scrape from inside the network)", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self, ctx: GatewayContext) -> Response[bytes]:
        metrics = ctx.metrics
        running = ctx.admission.gauges()["running"]
        metrics.unfinished_jobs.set(sum(running.values()))
        metrics.tenants_with_jobs.set(len(running))
        PLATFORM_VIEW.set(1 if metrics.exports_platform_view else 0)
        body = generate_latest(metrics.own) + generate_latest(REGISTRY)
        if metrics.exports_platform_view:  # one replica at a time: summing over replicas never counts a job twice
            await metrics.refresh(ctx.runtime.bus.js)
            if ctx.admission.backlog is not None:
                metrics.backlog.set(await ctx.admission.backlog.size())
            body = generate_latest(metrics.registry) + body
        return Response(body, media_type=CONTENT_TYPE_LATEST)
