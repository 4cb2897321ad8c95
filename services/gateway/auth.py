"""API key → tenant. Keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

from typing import Any

from litestar import Request

from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.errors import Unauthorized


async def provide_tenant(request: Request[Any, Any, Any], ctx: GatewayContext) -> str:
    key = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    tenant = ctx.tenants.get(key)
    if tenant is None:
        raise Unauthorized("unknown API key")
    return str(tenant)
