"""Deliver a tenant's webhook when one of its segmentations ends.

One consumer per final event type. A job with its own URL (`<tenant>.<job>`) is reported there,
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

from maskline.contracts import seg_v1
from maskline.contracts import subjects as table
from maskline.contracts.common_v1 import JobFailed
from maskline.contracts.envelope import Envelope
from maskline.contracts.http_v1 import JobError, WebhookDelivery
from maskline.services.notify.settings import NotifySettings
from maskline.shared import webhooks
from maskline.shared.consumer import ConsumerSpec
from maskline.shared.errors import PermanentError, RetryableError
from maskline.shared.runtime import Runtime

NAME = table.NOTIFY
log = structlog.get_logger(NAME)
STATUS = {seg_v1.COMPLETED: "completed", seg_v1.FAILED: "failed", seg_v1.CANCELLED: "cancelled"}


class WebhookFailed(RetryableError):
    code = "webhook_failed"


class Notifier:
    def __init__(self, settings: NotifySettings, targets: webhooks.WebhookTargets) -> None:
        self.settings = settings
        self.targets = targets
        self.http = httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False)

    async def handle(self, env: Envelope[Any]) -> list[Envelope[Any]]:
        found = await self.targets.for_job(env.tenant, env.job_id)
        if found is None:
            return []
        key, target = found
        assert target.url is not None
        try:  # checked again at delivery: a name may resolve elsewhere than when it was registered
            url = webhooks.check_url(target.url, allow_private=self.settings.webhook_allow_private)
        except webhooks.WebhookRefused as exc:
            raise PermanentError(str(exc), code="webhook_refused") from exc
        failure = env.data if isinstance(env.data, JobFailed) else None
        delivery = WebhookDelivery(
            type=env.type,
            job_id=env.job_id,
            tenant=env.tenant,
            status=STATUS[env.type],
            time=env.time,
            links={"self": f"/v1/segmentations/{env.job_id}", "audit": f"/v1/audit?job={env.job_id}"},
            error=JobError(stage=failure.stage, code=failure.code, reason=failure.reason) if failure else None,
        )
        body = msgspec.json.encode(delivery)
        headers = {
            "Content-Type": "application/json",
            "Maskline-Event": env.type,
            "Maskline-Delivery": env.id,  # the same on every retry: receivers drop repeats by it
            webhooks.SIGNATURE: webhooks.sign(target.secret, body, int(time.time())),
        }
        try:
            response = await self.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise WebhookFailed(f"webhook {url} unreachable: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            raise WebhookFailed(f"webhook {url} answered {response.status_code}")
        log.info("webhook.delivered", url=url, status=response.status_code, event=env.type)
        if key == webhooks.job_key(env.tenant, env.job_id):
            await self.targets.delete(key)  # one request's own URL is used once
        return []


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    assert isinstance(runtime.settings, NotifySettings)
    targets = webhooks.WebhookTargets(runtime.bus.js)
    await targets.open()
    notifier = Notifier(runtime.settings, targets)
    for type_ in STATUS:
        runtime.consume(ConsumerSpec.for_subject(NAME, type_, notifier.handle, concurrency=runtime.settings.concurrency))
    return []
