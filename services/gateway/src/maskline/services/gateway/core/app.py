"""Assemble the litestar application: controllers, dependencies, problem+json, OpenAPI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, OpenAPI, OpenAPIMediaType, OpenAPIResponse, Reference, Schema, SecurityScheme
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

from maskline.services.gateway.core import problems
from maskline.services.gateway.core.auth import provide_tenant
from maskline.services.gateway.core.context import GatewayContext
from maskline.services.gateway.core.health import HealthController
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.pages import security_headers
from maskline.services.gateway.core.shedding import shed_over_limits
from maskline.services.gateway.data.datasets import DatasetController
from maskline.services.gateway.data.files import FileController
from maskline.services.gateway.models.aliases import AliasChanges, AliasController
from maskline.services.gateway.models.evaluations import EvaluationController
from maskline.services.gateway.models.federations import FederationController
from maskline.services.gateway.models.quantization import QuantizeController
from maskline.services.gateway.models.sharing import AccessController
from maskline.services.gateway.models.versions import ModelController, ModelMergeController
from maskline.services.gateway.models.visualizer import VisualizerController
from maskline.services.gateway.operations.audit_views import AuditController
from maskline.services.gateway.operations.dashboard import DashboardController
from maskline.services.gateway.operations.dead_letters import DeadLetterController
from maskline.services.gateway.operations.fleet_view import FleetController
from maskline.services.gateway.operations.metrics import HTTP_METRICS, MetricsController
from maskline.services.gateway.segmentations.control import ControlController
from maskline.services.gateway.segmentations.inference_protocol import InferenceProtocolController
from maskline.services.gateway.segmentations.routes import (
    ExportController,
    SegmentationController,
    SegmentationJobs,
    UploadController,
)
from maskline.services.gateway.tracking.job_routes import CommandJobs, JobController
from maskline.services.gateway.tracking.progress import JobEventsController
from maskline.services.gateway.tracking.webhook_settings import WebhookController
from maskline.shared.version import CODE_VERSION

#: Answer without an API key: probes, the Prometheus scrape, the dashboard and visualizer pages and the
#: libraries they load (their data calls need one).
PUBLIC_PATHS = ("/health/", "/metrics", "/dashboard", "/visualizer", "/compare", "/static/vendor/")
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


#: Operations that answer with a file, and the media types it can have.
BINARY = {
    "/v1/segmentations/{job_id}/{artifact}": ("image/png", "application/json"),
    "/v1/files/{area}/{path}": ("application/octet-stream",),
}


def operation_id(handler: HTTPRouteHandler, method: Any, path_components: Any) -> str:
    """Readable operation ids for generated clients: `<tag><Handler>`, e.g. `segmentationsSubmit`,
    `modelsRegister` (the tag is the controller's resource)."""
    tags = handler.resolve_tags()
    resource = tags[0] if tags else "platform"
    words = [*resource.replace("-", "_").split("_"), *handler.handler_name.split("_")]
    return words[0].lower() + "".join(word.title() for word in words[1:])


def _problem_response(what: str) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=what,
        content={"application/problem+json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/Problem"))},
    )


def document(openapi: OpenAPI) -> OpenAPI:
    """Declare in the OpenAPI document what every operation may answer besides success: a problem
    (4XX for the request, 5XX for the platform), and which operations need no API key."""
    assert openapi.components is not None
    components = openapi.components if isinstance(openapi.components, Components) else Components()
    components.schemas = {**(components.schemas or {}), "Problem": PROBLEM}
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "post", "put", "delete", "patch"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            operation.responses = dict(operation.responses or {})
            if path in BINARY and method == "get":
                binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
                operation.responses["200"] = OpenAPIResponse(
                    description="The file's bytes", content={kind: OpenAPIMediaType(schema=binary) for kind in BINARY[path]}
                )
            operation.responses.setdefault("4XX", _problem_response("The request was refused: problem+json with a stable code"))
            operation.responses.setdefault("5XX", _problem_response("The platform could not answer (503: retry later)"))
            if path.startswith(PUBLIC_PATHS):
                operation.security = []
            else:
                operation.responses.setdefault("401", _problem_response("Missing or unknown API key"))
    return openapi


def create_app(ctx: GatewayContext) -> Litestar:
    """The app over the context's parts. A handler asks for a part by naming it as a parameter (the
    keys of `dependencies` below): it receives only what it uses, never the context whole.

    Beware a misspelt name: litestar reads a parameter that names no dependency, path parameter or
    reserved word as a required query parameter (a 400 for every request), without a word at start.
    The OpenAPI document shows it. A part is named apart from every query parameter for the same
    reason: `job_store`, not `jobs` (`?jobs=` of /v1/exports/segmentations); `platform_metrics`,
    not `metrics` (`?metrics=` of a federated update)."""

    def part(read: Callable[[], Any]) -> Provide:
        """A dependency that is one of the context's parts, read when a request asks for it, never
        here: the routes and their OpenAPI document are assembled from the settings alone
        (tests/services/gateway/test_routes.py)."""
        return Provide(read, sync_to_thread=False)

    def grouped(kind: type[Any]) -> Provide:
        """Parts a helper uses together, for one job (a dataclass): litestar fills each field from
        the part of the same name."""
        return Provide(kind, sync_to_thread=False)

    def tenants_by_key() -> dict[str, str]:
        return ctx.tenants

    def intake() -> Intake:
        return Intake(bus=ctx.runtime.bus, admission=ctx.admission, metrics=ctx.metrics)

    app = Litestar(
        route_handlers=[
            SegmentationController,
            ControlController,
            UploadController,
            ExportController,
            WebhookController,
            InferenceProtocolController,
            ModelController,
            AccessController,
            AliasController,
            EvaluationController,
            FederationController,
            ModelMergeController,
            QuantizeController,
            DatasetController,
            JobController,
            JobEventsController,
            AuditController,
            HealthController,
            FleetController,
            MetricsController,
            DeadLetterController,
            DashboardController,
            VisualizerController,
            FileController,
        ],
        dependencies={
            "tenant": Provide(provide_tenant),
            "tenants_by_key": part(tenants_by_key),
            "failed_keys": part(lambda: ctx.failed_keys),
            "settings": part(lambda: ctx.settings),
            "bus": part(lambda: ctx.runtime.bus),
            "store": part(lambda: ctx.runtime.store),
            "readiness": part(lambda: ctx.runtime.readiness),
            "job_store": part(lambda: ctx.jobs),
            "registry": part(lambda: ctx.registry),
            "grants": part(lambda: ctx.grants),
            "shadows": part(lambda: ctx.shadows),
            "fences": part(lambda: ctx.fences),
            "cancellations": part(lambda: ctx.cancellations),
            "idempotency": part(lambda: ctx.idempotency),
            "waiters": part(lambda: ctx.waiters),
            "webhooks": part(lambda: ctx.webhooks),
            "admission": part(lambda: ctx.admission),
            "platform_metrics": part(lambda: ctx.metrics),
            "models": part(lambda: ModelLookup(ctx.registry, ctx.grants)),
            "intake": part(intake),
            "command_jobs": grouped(CommandJobs),
            "segmentation_jobs": grouped(SegmentationJobs),
            "alias_changes": grouped(AliasChanges),
        },
        guards=[shed_over_limits(tenants_by_key, intake)],
        # A server span per request, continuing the caller's `traceparent`: a job started inside it
        # takes its trace id (shared/tracing.py), so a client's trace runs on through the bus.
        plugins=[problems.plugin(), OpenTelemetryPlugin(OpenTelemetryConfig(exclude=["/metrics", "/health", "/v2/health"]))],
        middleware=[HTTP_METRICS.middleware, security_headers],
        exception_handlers=problems.catch_all(),
        request_max_body_size=ctx.settings.max_upload_bytes,
        openapi_config=OpenAPIConfig(
            title="maskline",
            version=CODE_VERSION,
            path="/schema",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="http", scheme="bearer", description="An API key (MASKLINE_API_KEYS); `X-API-Key: <key>` works too"
                    )
                }
            ),
            security=[{"apiKey": []}],
            operation_id_creator=operation_id,
        ),
        debug=False,
    )
    document(app.openapi_schema)
    return app
