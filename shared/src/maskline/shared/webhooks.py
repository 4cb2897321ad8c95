"""Webhooks: where they are kept, which URLs may be called, and how a delivery is signed.

A tenant's record is `<tenant>` in the `webhooks` bucket; one request's own URL is `<tenant>.<job>`
in `job-webhooks`, whose keys expire (notify only reads: it never removes what it used).
The signature follows the common pattern (Stripe, Svix): `Maskline-Signature: t=<unix>,v1=<hex>`,
the HMAC-SHA256 of `"<t>.<body>"` with the tenant's secret; a receiver checks it and the age of `t`.
Only public addresses may be called (no SSRF into the platform's own network), unless an operator
allows private ones (`MASKLINE_WEBHOOK_ALLOW_PRIVATE`, tests and on-premises receivers).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec
from nats.js import JetStreamContext

from maskline.contracts.common_v1 import Webhook
from maskline.shared.kv import get_decoded, open_bucket

BUCKET = "webhooks"
JOB_BUCKET = "job-webhooks"
SIGNATURE = "Maskline-Signature"
TOLERANCE_S = 300


class WebhookRefused(ValueError):
    """A URL that may not be called."""


def tenant_key(tenant: str) -> str:
    return tenant


def job_key(tenant: str, job_id: str) -> str:
    return f"{tenant}.{job_id}"


_decoder = msgspec.json.Decoder(Webhook)


class WebhookTargets:
    """The `webhooks` and `job-webhooks` buckets: written by the gateway, read by notify."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._tenants: Any = None
        self._jobs: Any = None

    async def open(self) -> None:
        self._tenants = await open_bucket(self._js, BUCKET)
        self._jobs = await open_bucket(self._js, JOB_BUCKET)

    async def of_tenant(self, tenant: str) -> Webhook | None:
        return await get_decoded(self._tenants, tenant_key(tenant), _decoder)

    async def set_for_tenant(self, tenant: str, webhook: Webhook) -> None:
        await self._tenants.put(tenant_key(tenant), msgspec.json.encode(webhook))

    async def remove_for_tenant(self, tenant: str) -> None:
        await self._tenants.delete(tenant_key(tenant))

    async def set_for_job(self, tenant: str, job_id: str, webhook: Webhook) -> None:
        await self._jobs.put(job_key(tenant, job_id), msgspec.json.encode(webhook))

    async def for_job(self, tenant: str, job_id: str) -> Webhook | None:
        """The request's own webhook, else the tenant's (None: neither has a URL)."""
        for found in (await get_decoded(self._jobs, job_key(tenant, job_id), _decoder), await self.of_tenant(tenant)):
            if found is not None and found.url:
                return found
        return None


def check_url(url: str, *, allow_private: bool) -> str:
    """`url` when it is http(s) to a host that resolves only to public addresses (or any, allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > 2048:
        raise WebhookRefused(f"webhook URL {url!r} is not http(s)://host/...")
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        raise WebhookRefused(f"webhook host {parts.hostname!r} does not resolve: {exc.strerror}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise WebhookRefused(
                f"webhook host {parts.hostname!r} is a private address ({address}); only public ones may be called"
            )
    return url


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    t = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """What a receiver does: the signature matches and is at most TOLERANCE_S old."""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    fresh = abs((time.time() if now is None else now) - t) <= TOLERANCE_S
    return fresh and hmac.compare_digest(sign(secret, body, t), f"t={t},v1={fields.get('v1', '')}")
