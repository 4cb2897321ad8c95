"""`/v1/webhooks`: where a tenant's jobs report their end, every kind of job (notify delivers, signed).

`PUT` sets the URL (or none: only a signing secret, for per-request `webhook_url`s) and answers
the secret once — when it is made, or rotated on request; `GET` shows the URL; `DELETE` stops it.
A request's own `webhook_url` (a form field of `POST /v1/segmentations`, a field of every JSON body
that starts a job) needs the secret to exist.
Every change is the tenant's own: no tenant sees or changes another's.
"""

from __future__ import annotations

from litestar import Controller, delete, get, put
from litestar.status_codes import HTTP_204_NO_CONTENT

from maskline.contracts.common_v1 import Webhook
from maskline.contracts.envelope import now
from maskline.contracts.http_v1 import WebhookBody, WebhookView
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import ROLE
from maskline.services.gateway.core.errors import NotFound, Unprocessable
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.tenants.webhooks import WebhookRefused, WebhookTargets, destination, new_secret

#: What a request that names its own `webhook_url` may be refused with (`register_for_job`).
JOB_WEBHOOK_REFUSALS = Unprocessable.coded("no_webhook_secret", "webhook_refused")


async def checked_url(url: str, *, allow_private: bool) -> str:
    try:
        await destination(url, allow_private=allow_private)
        return url
    except WebhookRefused as exc:
        raise Unprocessable(str(exc), code="webhook_refused") from exc


async def register_for_job(webhooks: WebhookTargets, tenant: str, job_id: str, url: str, *, allow_private: bool) -> None:
    """One request's own URL, signed with the tenant's secret."""
    tenant_record = await webhooks.of_tenant(tenant)
    if tenant_record is None:
        raise Unprocessable("a webhook_url needs your webhook secret first: PUT /v1/webhooks", code="no_webhook_secret")
    record = Webhook(
        url=await checked_url(url, allow_private=allow_private), secret=tenant_record.secret, created=now().isoformat()
    )
    await webhooks.set_for_job(tenant, job_id, record)


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]

    @get(
        summary="Your webhook (its URL; the secret is shown only when made)",
        opt={ANSWERS: Answers(refusals=NotFound.coded("no_webhook"))},
    )
    async def show(self, webhooks: WebhookTargets, tenant: str) -> WebhookView:
        record = await webhooks.of_tenant(tenant)
        if record is None:
            raise NotFound("you have no webhook: PUT /v1/webhooks", code="no_webhook")
        return WebhookView(url=record.url, created=record.created)

    @put(
        summary="Set your webhook's URL; the signing secret is answered when made or rotated",
        opt={ROLE: "owner", ANSWERS: Answers(refusals=Unprocessable.coded("webhook_refused"))},
    )
    async def set(self, webhooks: WebhookTargets, settings: GatewaySettings, tenant: str, data: WebhookBody) -> WebhookView:
        url = await checked_url(data.url, allow_private=settings.webhook_allow_private) if data.url else None
        old = await webhooks.of_tenant(tenant)
        fresh = old is None or data.rotate_secret
        secret = new_secret() if fresh or old is None else old.secret
        record = Webhook(url=url, secret=secret, created=now().isoformat())
        await webhooks.set_for_tenant(tenant, record)
        return WebhookView(url=url, created=record.created, secret=secret if fresh else None)

    @delete(status_code=HTTP_204_NO_CONTENT, summary="Stop your webhook (and forget its secret)", opt={ROLE: "owner"})
    async def remove(self, webhooks: WebhookTargets, tenant: str) -> None:
        await webhooks.remove_for_tenant(tenant)
