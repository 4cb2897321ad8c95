"""Gateway process: HTTP API (uvicorn + litestar) and completion waiters (a watch on the job-state bucket)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator

import uvicorn

from maskline.services.gateway.accounts.passwords import Passwords
from maskline.services.gateway.core.app import create_app
from maskline.services.gateway.core.context import GatewayContext
from maskline.services.gateway.operations.metrics import Metrics
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.shared.jobs.admission import Admission, Backlog
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.fence import Fences
from maskline.shared.jobs.idempotency import IdempotencyKeys
from maskline.shared.jobs.state import JobStore
from maskline.shared.lease import Lease
from maskline.shared.models.access import Grants
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.models.shadows import ShadowTallies
from maskline.shared.operations.quality import QualityStore
from maskline.shared.service.runtime import Runtime
from maskline.shared.tenants.accounts import Accounts, PendingSignIns, Sessions
from maskline.shared.tenants.webhooks import WebhookTargets

NAME = "gateway"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGTERM and drains everything."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_http(runtime: Runtime, server: _Server) -> None:
    async def stop_when_asked() -> None:
        await runtime.stopping.wait()
        server.should_exit = True

    stopper = asyncio.create_task(stop_when_asked())
    try:
        await server.serve()
    finally:
        stopper.cancel()


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    settings = runtime.settings
    assert isinstance(settings, GatewaySettings)
    jobs = await JobStore.opened(runtime.bus.js)
    registry = await ModelRegistry.opened(runtime.bus.js)
    grants = await Grants.opened(runtime.bus.js)
    idempotency = await IdempotencyKeys.opened(runtime.bus.js)
    shadows = await ShadowTallies.opened(runtime.bus.js)
    quality = await QualityStore.opened(runtime.bus.js)
    fences = await Fences.opened(runtime.bus.js, runtime.bus)
    cancellations = await Cancellations.opened(runtime.bus.js)
    targets = await WebhookTargets.opened(runtime.bus.js)
    admission = Admission(
        backlog=Backlog(runtime.bus.js),
        max_backlog=settings.max_backlog,
        tenant_rate_per_s=settings.tenant_rate_per_s,
        tenant_burst=settings.tenant_burst,
        tenant_max_jobs=settings.tenant_max_jobs,
        overrides=settings.limits_of(),
    )
    metrics = Metrics()
    metrics.lease = await Lease.opened(runtime.bus.js, "platform-metrics", runtime.instance)
    await metrics.lease.renew()  # a lone gateway exports from its first scrape
    waiters = CompletionWaiters(
        runtime.bus.js, jobs, on_finished=admission.finished, on_update=metrics.observe, unfinished=admission.unfinished
    )
    await waiters.start()
    ctx = GatewayContext(
        runtime=runtime,
        settings=settings,
        jobs=jobs,
        registry=registry,
        grants=grants,
        shadows=shadows,
        quality=quality,
        fences=fences,
        cancellations=cancellations,
        idempotency=idempotency,
        waiters=waiters,
        metrics=metrics,
        tenants=settings.tenants_by_key(),
        admission=admission,
        webhooks=targets,
        accounts=await Accounts.opened(runtime.bus.js),
        sessions=await Sessions.opened(runtime.bus.js),
        passwords=Passwords(settings.password_profile),
        sign_ins=await PendingSignIns.opened(runtime.bus.js),
    )
    config = uvicorn.Config(
        create_app(ctx),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Oversized headers (a 20,000-character Idempotency-Key) reach the app and get a problem+json
        # 400 with a code, instead of h11's bare 400 at 16 KB.
        h11_max_incomplete_event_size=256 * 1024,
        # Each request starts from an empty context. Without it, a large body (an image upload:
        # uvicorn pauses and resumes reading) lets one request's span leak into the next request on
        # the same keep-alive connection (CPython #140947): their jobs joined one trace.
        reset_contextvars=True,
    )
    return [
        _serve_http(runtime, _Server(config)),
        waiters.keep_watching(runtime.stopping),
        metrics.lease.keep(runtime.stopping),
    ]
