"""Jobs started by a command (dataset expansion, model merge): submit one, follow it at `/v1/jobs/{id}`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.status_codes import HTTP_202_ACCEPTED

from maskline.contracts.envelope import command, now
from maskline.contracts.http_v1 import JobView
from maskline.services.gateway.core.answers import ANSWERS, ETAG, Answers
from maskline.services.gateway.core.errors import NotFound
from maskline.services.gateway.core.intake import Intake
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.webhook_settings import register_for_job
from maskline.shared import tracing
from maskline.shared.bus import Bus
from maskline.shared.jobs.state import JobState, JobStore
from maskline.shared.storage import ObjectNotFound
from maskline.shared.tenants.webhooks import WebhookTargets

#: A running job that reported nothing for this long is shown as waiting for a worker (its worker
#: died, and no instance has taken it up yet: a live one would within the 10 s ack wait).
QUIET_S = 45.0


async def owned_job(job_store: JobStore, tenant: str, job_id: str) -> JobState:
    """One of the tenant's jobs (another tenant's reads as missing)."""
    state = await job_store.get(tenant, job_id)
    if state is None:
        raise NotFound(f"no segmentation {job_id}")
    return state


def job_view(state: JobState) -> JobView:
    error = msgspec.structs.asdict(state.error) if state.error else None
    links = {"self": f"/v1/jobs/{state.job_id}", "audit": f"/v1/audit?job={state.job_id}"}
    if state.model is not None:
        links["model"] = f"/v1/models/{state.model.name}/{state.model.version}"
    if state.dataset is not None:
        links["dataset"] = "/v1/datasets/" + state.dataset.target.rstrip("/").rsplit("/", 1)[-1]
    if state.kind in ("quantization", "layer-edit") and state.model is not None:
        base = f"/v1/models/{state.model.name}/{state.model.version}"
        links.update({"step": f"{base}/reports/step", "graph": f"{base}/graph"})
    for name in state.artifacts if state.kind in ("feature-maps", "evaluation") else ():
        links[name] = f"/v1/jobs/{state.job_id}/artifacts/{name}"
    if state.kind == "evaluation" and state.model is not None:
        owner = f"?owner={state.model.owner}" if state.model.owner and state.model.owner != state.tenant else ""
        links["evaluations"] = f"/v1/models/{state.model.name}/{state.model.version}/evaluations{owner}"
    quiet = max(0.0, (now() - state.updated).total_seconds())
    waiting = not state.finished and quiet > QUIET_S
    return JobView(
        id=state.job_id,
        kind=state.kind,
        status=state.status,
        progress=state.progress,
        stage=f"waiting for a worker (nothing heard for {quiet:.0f} s)" if waiting else state.stage,
        error=error,
        links=links,
        quiet_s=round(quiet, 1),
        waiting_for_worker=waiting,
    )


@dataclass(frozen=True)
class CommandJobs:
    """Start a job with a command: what a handler asks for as `command_jobs`, built by litestar from
    the parts of the same names (app.py)."""

    intake: Intake
    webhooks: WebhookTargets
    settings: GatewaySettings
    bus: Bus
    job_store: JobStore
    fresh_job_id: str
    """The request's job id: kept by its Idempotency-Key's claim, so a retry restarts the same job."""

    async def submit(
        self,
        tenant: str,
        type_: str,
        data: Any,
        *,
        job_id: str | None = None,
        webhook_url: str | None = None,
        deadline: datetime | None = None,
    ) -> Response[JobView]:
        """Record and publish a command as a new job; answer 202 with where to follow it."""
        self.intake.require_bus()
        job_id = job_id or self.fresh_job_id
        if webhook_url:  # recorded before the job exists: its end cannot come first
            allow_private = self.settings.webhook_allow_private
            await register_for_job(self.webhooks, tenant, job_id, webhook_url, allow_private=allow_private)
        env = command(
            type_, "gateway", data, tenant=tenant, job_id=job_id, trace_id=tracing.current_trace_id(), deadline=deadline
        )
        await self.bus.publish(env)  # first: a refused publish leaves no job state behind
        state = await self.job_store.apply(env)
        return Response(job_view(state), status_code=HTTP_202_ACCEPTED, headers={"Location": f"/v1/jobs/{job_id}"})


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @get("/{job_id:str}", summary="Any job's status and progress (segmentations have a richer view)")
    async def job(self, job_store: JobStore, tenant: str, job_id: str) -> JobView:
        state = await job_store.get(tenant, job_id)
        if state is None:
            raise NotFound(f"no job {job_id}")
        return job_view(state)

    @get(
        "/{job_id:str}/artifacts/{name:str}",
        summary="Download one output of a job (a feature-map picture, an evaluation)",
        opt={ANSWERS: Answers(files=("image/png", "application/json"), headers={ETAG: True})},
    )
    async def artifact(self, job_store: JobStore, store: Store, tenant: str, job_id: str, name: str) -> Response[bytes]:
        return await download(store, await owned_job(job_store, tenant, job_id), name)


async def artifact_bytes(store: Store, state: JobState, name: str) -> bytes:
    """One output of a job (404 while it has none by that name, or the bytes are gone)."""
    ref = state.artifacts.get(name)
    if ref is None:
        raise NotFound(f"job {state.job_id} has no output {name!r} (status {state.status})")
    try:
        return await store.get(ref.key)
    except ObjectNotFound as exc:
        raise NotFound(f"output {name} of {state.job_id} is gone from storage") from exc


async def download(store: Store, state: JobState, name: str) -> Response[bytes]:
    """One output of a job, with its sha256 as the ETag."""
    body = await artifact_bytes(store, state, name)
    ref = state.artifacts[name]
    return Response(body, media_type=ref.content_type, headers={"ETag": f'"{ref.sha256}"'})
