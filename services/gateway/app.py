"""Assemble the litestar application: controllers, dependencies, problem+json, OpenAPI."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

import maskline
from maskline.services.gateway import problems
from maskline.services.gateway.audit import AuditController
from maskline.services.gateway.auth import provide_tenant
from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.dashboard import DashboardController
from maskline.services.gateway.datasets import DatasetController
from maskline.services.gateway.dlq import DeadLetterController
from maskline.services.gateway.files import FileController
from maskline.services.gateway.fleet import FleetController
from maskline.services.gateway.health import HealthController
from maskline.services.gateway.jobs import JobController
from maskline.services.gateway.metrics import MetricsController
from maskline.services.gateway.models import ModelController, ModelMergeController
from maskline.services.gateway.quantize import QuantizeController
from maskline.services.gateway.segmentations import SegmentationController


def create_app(ctx: GatewayContext) -> Litestar:
    async def provide_ctx() -> GatewayContext:
        return ctx

    return Litestar(
        route_handlers=[
            SegmentationController,
            ModelController,
            ModelMergeController,
            QuantizeController,
            DatasetController,
            JobController,
            AuditController,
            HealthController,
            FleetController,
            MetricsController,
            DeadLetterController,
            DashboardController,
            FileController,
        ],
        dependencies={"ctx": Provide(provide_ctx), "tenant": Provide(provide_tenant)},
        plugins=[problems.plugin()],
        request_max_body_size=ctx.settings.max_upload_bytes,
        openapi_config=OpenAPIConfig(title="maskline", version=maskline.__version__, path="/schema"),
        debug=False,
    )
