"""The operator dashboard: one static page (no build step) over `/v1/services`, `/v1/dashboard/jobs`, `/v1/dlq`."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, MediaType, Response, get

from maskline.services.gateway.core.auth import Caller
from maskline.services.gateway.core.pages import page
from maskline.shared.jobs.state import JobStore


class DashboardController(Controller):
    tags = ["operations"]

    @get(
        "/dashboard",
        summary="Operator dashboard (signed in; every tenant's view for operators)",
        media_type=MediaType.HTML,
        include_in_schema=False,
    )
    async def page(self) -> Response[bytes]:
        return page("dashboard.html")

    @get(
        "/quality",
        summary="Model quality over time: your versions' hourly trends, drift flags and what Triton holds (uPlot)",
        media_type=MediaType.HTML,
        include_in_schema=False,
    )
    async def quality_page(self) -> Response[bytes]:
        return page("quality.html")

    @get("/v1/dashboard/jobs", summary="Recent jobs (yours; operators: everyone's) with status, progress, timings and errors")
    async def jobs(self, job_store: JobStore, caller: Caller, limit: int = 50) -> list[dict[str, Any]]:
        operator, tenant = caller.operator, caller.tenant
        rows = []
        for state in await job_store.recent(min(max(limit, 1), 500)):
            if not operator and state.tenant != tenant:
                continue
            rows.append(
                {
                    "id": state.job_id,
                    "tenant": state.tenant,
                    "kind": state.kind,
                    "status": state.status,
                    "created": state.created.isoformat(),
                    "updated": state.updated.isoformat(),
                    "progress": state.progress,
                    "stage": state.stage,
                    "model": f"{state.model.name}/{state.model.version} {state.model.precision}" if state.model else None,
                    "timings_ms": state.timings_ms,
                    "confidence": msgspec.to_builtins(state.confidence) if state.confidence else None,
                    "error": {"stage": state.error.stage, "code": state.error.code, "reason": state.error.reason}
                    if state.error
                    else None,
                }
            )
        return rows
