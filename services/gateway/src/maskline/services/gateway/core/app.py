"""Assemble the litestar application: controllers, dependencies, problem+json, OpenAPI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Litestar, Request
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

from maskline.services.gateway.accounts.oidc import SingleSignOnController
from maskline.services.gateway.accounts.people import PeopleController
from maskline.services.gateway.accounts.personal_keys import PersonalKeyController
from maskline.services.gateway.accounts.sign_in import SignInController
from maskline.services.gateway.console.pages import ConsoleController
from maskline.services.gateway.core import problems
from maskline.services.gateway.core.auth import Identities, provide_caller, provide_tenant
from maskline.services.gateway.core.context import GatewayContext
from maskline.services.gateway.core.health import HealthController
from maskline.services.gateway.core.idempotent_requests import idempotent_posts, job_id_for
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.openapi import document, operation_id
from maskline.services.gateway.core.pages import security_headers
from maskline.services.gateway.core.shedding import shed_over_limits
from maskline.services.gateway.data.datasets import DatasetController
from maskline.services.gateway.data.files import FileController
from maskline.services.gateway.models.aliases import AliasChanges, AliasController
from maskline.services.gateway.models.evaluations import EvaluationController
from maskline.services.gateway.models.federation_training import FederationTrainingController
from maskline.services.gateway.models.federations import FederationController
from maskline.services.gateway.models.quality import QualityController
from maskline.services.gateway.models.quantization import QuantizeController
from maskline.services.gateway.models.sharing import AccessController
from maskline.services.gateway.models.training import TrainingController
from maskline.services.gateway.models.versions import ModelController, ModelMergeController
from maskline.services.gateway.models.visualizer import VisualizerController
from maskline.services.gateway.operations.audit_views import AuditController
from maskline.services.gateway.operations.dashboard import DashboardController
from maskline.services.gateway.operations.dead_letters import DeadLetterController
from maskline.services.gateway.operations.fleet_view import FleetController
from maskline.services.gateway.operations.metrics import HTTP_METRICS, MetricsController
from maskline.services.gateway.segmentations.control import ControlController
from maskline.services.gateway.segmentations.inference_protocol import InferenceProtocolController
from maskline.services.gateway.segmentations.label_studio import LabelStudioBackend
from maskline.services.gateway.segmentations.routes import ExportController, SegmentationController, UploadController
from maskline.services.gateway.segmentations.submission import SegmentationJobs
from maskline.services.gateway.tracking.job_routes import CommandJobs, JobController
from maskline.services.gateway.tracking.progress import JobEventsController
from maskline.services.gateway.tracking.webhook_settings import WebhookController
from maskline.shared.version import CODE_VERSION


def create_app(ctx: GatewayContext) -> Litestar:
    """The app over the context's parts. A handler asks for a part by naming it as a parameter (the
    keys of `dependencies` below): it receives only what it uses, never the context whole.

    Beware a misspelt name: litestar reads a parameter that names no dependency, path parameter or
    reserved word as a required query parameter (a 400 for every request), without a word at start.
    The OpenAPI document shows it. A part is named apart from every query parameter for the same
    reason: `job_store`, not `jobs` (`?jobs=` of /v1/exports/segmentations); `platform_metrics`,
    not `metrics` (`?metrics=` of a federated update). A new part names what it may answer in
    `openapi.PARTS` (a test holds every part to it)."""

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

    identities = Identities(tenants_by_key, lambda: ctx.accounts, lambda: ctx.sessions)

    def intake() -> Intake:
        return Intake(bus=ctx.runtime.bus, admission=ctx.admission, metrics=ctx.metrics)

    def fresh_job_id(request: Request[Any, Any, Any]) -> str:
        return job_id_for(request.scope)

    app = Litestar(
        route_handlers=[
            SignInController,
            SingleSignOnController,
            ConsoleController,
            PersonalKeyController,
            PeopleController,
            SegmentationController,
            ControlController,
            UploadController,
            ExportController,
            LabelStudioBackend,
            WebhookController,
            InferenceProtocolController,
            ModelController,
            AccessController,
            AliasController,
            EvaluationController,
            FederationController,
            FederationTrainingController,
            ModelMergeController,
            QuantizeController,
            QualityController,
            TrainingController,
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
            "caller": Provide(provide_caller),
            "tenant": Provide(provide_tenant),
            "identities": part(lambda: identities),
            "accounts": part(lambda: ctx.accounts),
            "sessions": part(lambda: ctx.sessions),
            "passwords": part(lambda: ctx.passwords),
            "sign_ins": part(lambda: ctx.sign_ins),
            "sign_in_starts": part(lambda: ctx.sign_in_starts),
            "failed_sign_ins": part(lambda: ctx.failed_sign_ins),
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
            "quality": part(lambda: ctx.quality),
            "fences": part(lambda: ctx.fences),
            "cancellations": part(lambda: ctx.cancellations),
            "idempotency": part(lambda: ctx.idempotency),
            "waiters": part(lambda: ctx.waiters),
            "webhooks": part(lambda: ctx.webhooks),
            "admission": part(lambda: ctx.admission),
            "platform_metrics": part(lambda: ctx.metrics),
            "models": part(lambda: ModelLookup(ctx.registry, ctx.grants)),
            "intake": part(intake),
            "fresh_job_id": Provide(fresh_job_id, sync_to_thread=False),
            "command_jobs": grouped(CommandJobs),
            "segmentation_jobs": grouped(SegmentationJobs),
            "alias_changes": grouped(AliasChanges),
        },
        guards=[shed_over_limits(identities.tenant_of, intake)],
        # A server span per request, continuing the caller's `traceparent`: a job started inside it
        # takes its trace id (shared/tracing.py), so a client's trace runs on through the bus.
        # The single sign-on callback's address holds a one-time code: not one for the traces.
        plugins=[
            problems.plugin(),
            OpenTelemetryPlugin(OpenTelemetryConfig(exclude=["/metrics", "/health", "/v2/health", "/v1/sign-in/oidc/callback"])),
        ],
        # Innermost, the idempotency layer: an answer it sends again passes the others like a new one.
        middleware=[HTTP_METRICS.middleware, security_headers, idempotent_posts(identities.claimant_of, lambda: ctx.idempotency)],
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
    document(app)
    return app
