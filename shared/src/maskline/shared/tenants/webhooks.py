"""Webhooks: where they are kept, which addresses may be called, and how a delivery is signed.

A tenant's record is `<tenant>` in the `webhooks` bucket; one request's own URL is `<tenant>.<job>`
in `job-webhooks`, whose keys expire (notify only reads: it never removes what it used).

Signatures, two schemes on every delivery, over the same body:
- Standard Webhooks (standardwebhooks.com; its libraries verify it): `webhook-id` (the delivery id,
  the same on every retry), `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
  "<id>.<timestamp>.<body>">`. New secrets are `whsec_<base64>` as the spec gives them;
- `Maskline-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (Stripe's pattern), kept for
  receivers written against it.

Addresses: a delivery resolves its host once, refuses it unless every address is public (IPv6
forms that embed an IPv4 address — mapped, compatible, 6to4, Teredo, NAT64 — are judged by that
address), and connects to the address it checked (`Destination`): a name that answers differently
a moment later (DNS rebinding) cannot steer the connection into the platform's own network. An
operator may allow private addresses (`MASKLINE_WEBHOOK_ALLOW_PRIVATE`: tests, on-premises
receivers); the connection is pinned all the same.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import SplitResult, urlsplit, urlunsplit

import msgspec
import standardwebhooks
from nats.js import JetStreamContext

from maskline.contracts.common_v1 import Webhook
from maskline.shared.kv import BucketMirror, BucketStore, get_decoded, open_bucket

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


class WebhookTargets(BucketStore):
    """The `webhooks` and `job-webhooks` buckets: written by the gateway, read by notify."""

    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)
        self._jobs: Any = None
        self.mirror: BucketMirror[Webhook] | None = None
        """notify's view of every tenant's record (`follow`): a job's end costs no read unless
        its tenant has a webhook at all."""

    async def open(self) -> Self:
        await super().open()
        self._jobs = await open_bucket(self.js, JOB_BUCKET)
        return self

    async def follow(self) -> None:
        self.mirror = BucketMirror(self.js, BUCKET, _decoder)
        await self.mirror.start()

    async def of_tenant(self, tenant: str) -> Webhook | None:
        if self.mirror is not None:
            return self.mirror.get(tenant_key(tenant))
        return await get_decoded(self.kv, tenant_key(tenant), _decoder)

    async def set_for_tenant(self, tenant: str, webhook: Webhook) -> None:
        await self.kv.put(tenant_key(tenant), msgspec.json.encode(webhook))

    async def remove_for_tenant(self, tenant: str) -> None:
        await self.kv.delete(tenant_key(tenant))

    async def set_for_job(self, tenant: str, job_id: str, webhook: Webhook) -> None:
        await self._jobs.put(job_key(tenant, job_id), msgspec.json.encode(webhook))

    async def for_job(self, tenant: str, job_id: str) -> Webhook | None:
        """The request's own webhook, else the tenant's (None: neither has a URL). A request's own
        URL needs its tenant's record (the secret), so a tenant without one has neither."""
        tenant_record = await self.of_tenant(tenant)
        if tenant_record is None:
            return None
        for found in (await get_decoded(self._jobs, job_key(tenant, job_id), _decoder), tenant_record):
            if found is not None and found.url:
                return found
        return None


#: IPv6 prefixes whose low 32 bits are an IPv4 address a packet may end up at.
_EMBEDDING = (ipaddress.ip_network("::/96"), ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

Resolver = Callable[[str, int], Awaitable[list[str]]]


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in net for net in _EMBEDDING) and int(address) & 0xFFFFFFFF and address != ipaddress.IPv6Address("::1"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a webhook may be delivered to `address` (a global unicast address, wherever it leads)."""
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    return address.is_global and not address.is_multicast


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Destination:
    """Where one delivery goes: the URL to connect to (the checked address in place of the host),
    and the host the receiver expects in `Host` and in TLS (SNI and certificate)."""

    url: str
    host_header: str
    server_name: str
    address: str


def _parts(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or len(url) > 2048:
        raise WebhookRefused(f"webhook URL {url!r} is not http(s)://host/...")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise WebhookRefused(f"webhook URL {url!r} has an invalid port") from exc
    return parts


async def destination(url: str, *, allow_private: bool, resolve: Resolver = system_resolver) -> Destination:
    """Resolve `url`'s host once and pin the delivery to the address checked (every address the name
    has must be public, unless private ones are allowed)."""
    parts = _parts(url)
    host = parts.hostname
    assert host is not None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await resolve(host, port)]
    except (OSError, ValueError) as exc:
        raise WebhookRefused(f"webhook host {host!r} does not resolve: {exc}") from exc
    if not found:
        raise WebhookRefused(f"webhook host {host!r} does not resolve")
    if not allow_private:
        for address in found:
            if not is_public(address):
                raise WebhookRefused(f"webhook host {host!r} is a private address ({address}); only public ones may be called")
    pinned = found[0]
    literal = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    netloc = f"{literal}:{port}"
    default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
    host_header = host if default_port else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal in the URL keeps its brackets in Host
        host_header = f"[{host}]" if default_port else f"[{host}]:{port}"
    return Destination(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        host_header=host_header,
        server_name=host,
        address=str(pinned),
    )


def check_url(url: str, *, allow_private: bool) -> str:
    """`url` when it is http(s) to a host that resolves only to public addresses (or any, allowed).
    Asked when a URL is registered, to refuse it at once; each delivery checks again (`destination`)."""
    asyncio.run(destination(url, allow_private=allow_private))
    return url


def new_secret() -> str:
    """A signing secret as Standard Webhooks gives them: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _standard(secret: str) -> standardwebhooks.Webhook:
    """The Standard Webhooks signer of a secret; one made before `whsec_` secrets is used as its bytes
    (a receiver gives the library `whsec_` + base64 of the secret's UTF-8 bytes)."""
    return standardwebhooks.Webhook(secret if secret.startswith("whsec_") else secret.encode())


def signed_headers(secret: str, delivery_id: str, body: bytes, at: int | None = None) -> dict[str, str]:
    """Both signatures of one delivery; the delivery id is inside the Standard Webhooks one."""
    t = int(time.time()) if at is None else at
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(t),
        "webhook-signature": _standard(secret).sign(delivery_id, datetime.fromtimestamp(t, UTC), body),
        SIGNATURE: sign(secret, body, t),
    }


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
