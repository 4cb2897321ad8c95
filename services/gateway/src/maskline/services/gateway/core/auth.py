"""API key → tenant. Keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>`.

A client address that presents more than `max_failed_keys` unknown keys in a minute is refused for
the rest of that minute, a good key included (429 `too_many_failed_keys`): guessing a key is then
a matter of centuries. Behind a proxy (compose's Caddy), `MASKLINE_TRUST_FORWARDED_FOR` makes the
address the one the proxy saw (the last `X-Forwarded-For` entry).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import Headers

from maskline.services.gateway.core.context import GatewayContext
from maskline.services.gateway.core.errors import TooManyRequests, Unauthorized


def client_address(request: Request[Any, Any, Any], trust_forwarded_for: bool) -> str:
    forwarded = request.headers.get("x-forwarded-for", "") if trust_forwarded_for else ""
    if forwarded:
        return forwarded.split(",")[-1].strip()
    return request.client.host if request.client else "unknown"


def api_key(headers: Headers) -> str:
    key = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key


async def provide_tenant(request: Request[Any, Any, Any], ctx: GatewayContext) -> str:
    key = api_key(request.headers)
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    client = client_address(request, ctx.settings.trust_forwarded_for)
    wait = ctx.failed_keys.blocked_for(client, ctx.settings.max_failed_keys)
    if wait > 0:
        raise TooManyRequests(
            f"too many unknown API keys from this address: try again in {wait:.0f} s",
            code="too_many_failed_keys",
            retry_after_s=wait,
        )
    tenant = ctx.tenants.get(key)
    if tenant is None:
        ctx.failed_keys.failed(client)
        raise Unauthorized("unknown API key")
    return str(tenant)
