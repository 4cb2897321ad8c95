"""Deliver a tenant's webhook when one of its jobs ends: segmentations, and every job a command
starts (registration, merge, quantization, layer edit, evaluation, feature maps, dataset expansion).

One consumer per event type that can end a job (the subject table gives them). An event that does
not end its job (a merge's registration of its result) is skipped: which kind of job it belongs to
is read from the job-state projection, and while that has not recorded the job yet the event is
tried again. A job with its own URL (`<tenant>.<job>`) is reported there,
else at the tenant's URL (`<tenant>`), else nowhere. A delivery that is not answered 2xx raises a
retryable error: the consumer tries again with back-off and, after its deliveries are spent,
dead-letters it — no failure subject, so an unreachable receiver never changes the job.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import httpx
import msgspec
import structlog

from maskline.contracts import subjects as table
from maskline.contracts.common_v1 import JobFailed
from maskline.contracts.envelope import Envelope
from maskline.contracts.http_v1 import JobError, WebhookDelivery, job_links
from maskline.services.notify.settings import NotifySettings
from maskline.shared.errors import PermanentError, RetryableError
from maskline.shared.jobs.state import STATUS_OF, JobKind, JobStore, ends_job
from maskline.shared.service.consumer import ConsumerSpec
from maskline.shared.service.runtime import Runtime
from maskline.shared.tenants import webhooks

NAME = table.NOTIFY
log = structlog.get_logger(NAME)
#: Every event notify reads: the subjects whose table entry names a notify consumer.
WATCHED = tuple(s.type for s in table.SUBJECTS if any(c.service == NAME for c in s.consumers))


class WebhookFailed(RetryableError):
    code = "webhook_failed"


class JobNotRecorded(RetryableError):
    code = "job_not_recorded"


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        targets: webhooks.WebhookTargets,
        jobs: JobStore,
        resolve: webhooks.Resolver = webhooks.system_resolver,
    ) -> None:
        self.settings = settings
        self.targets = targets
        self.jobs = jobs
        self.resolve = resolve
        self.http = httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False)

    async def kind_of(self, env: Envelope[Any]) -> JobKind:
        if table.subject(env.type).stream == "SEG":
            return "segmentation"
        state = await self.jobs.get(env.tenant, env.job_id)
        if state is None:  # the projection is behind (audit paused): ask again, never guess
            raise JobNotRecorded(f"job {env.job_id} is not in the job-state projection yet")
        return state.kind

    async def handle(self, env: Envelope[Any]) -> list[Envelope[Any]]:
        target = await self.targets.for_job(env.tenant, env.job_id)
        if target is None:
            return []
        kind = await self.kind_of(env)
        if not ends_job(kind, env.type):
            return []
        assert target.url is not None
        try:  # resolved once for this delivery, checked, and the connection pinned to what was checked
            allow_private = self.settings.webhook_allow_private
            where = await webhooks.destination(target.url, allow_private=allow_private, resolve=self.resolve)
        except webhooks.WebhookRefused as exc:
            raise PermanentError(str(exc), code="webhook_refused") from exc
        url = target.url
        failure = env.data if isinstance(env.data, JobFailed) else None
        delivery = WebhookDelivery(
            type=env.type,
            job_id=env.job_id,
            tenant=env.tenant,
            status=STATUS_OF[env.type],
            time=env.time,
            links=job_links(kind, env.job_id),
            error=JobError(stage=failure.stage, code=failure.code, reason=failure.reason) if failure else None,
            kind=kind,
        )
        body = msgspec.json.encode(delivery)
        headers = {
            "Content-Type": "application/json",
            "Host": where.host_header,
            "Maskline-Event": env.type,
            "Maskline-Delivery": env.id,  # the same on every retry: receivers drop repeats by it
            **webhooks.signed_headers(target.secret, env.id, body, int(time.time())),
        }
        try:  # to the address checked above; TLS still names (and verifies) the URL's host
            response = await self.http.post(
                where.url, content=body, headers=headers, extensions={"sni_hostname": where.server_name}
            )
        except httpx.HTTPError as exc:
            raise WebhookFailed(f"webhook {url} unreachable: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"webhook {url} answered {response.status_code}")
        log.info("webhook.delivered", url=url, status=response.status_code, event_type=env.type, kind=kind)
        return []


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    assert isinstance(runtime.settings, NotifySettings)
    targets = await webhooks.WebhookTargets.opened(runtime.bus.js)
    await targets.follow()  # every tenant's record in memory: a job's end reads nothing more unless it has one
    jobs = await JobStore.opened(runtime.bus.js)
    notifier = Notifier(runtime.settings, targets, jobs)
    for type_ in WATCHED:
        runtime.consume(ConsumerSpec.for_subject(NAME, type_, notifier.handle, concurrency=runtime.settings.concurrency))
    assert targets.mirror is not None
    return [targets.mirror.keep(runtime.stopping)]
