"""API key → tenant. Keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import Headers

from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.errors import Unauthorized


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
    tenant = ctx.tenants.get(key)
    if tenant is None:
        raise Unauthorized("unknown API key")
    return str(tenant)
