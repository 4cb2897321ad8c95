"""API key → tenant. Keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>`, or as the
password of `Authorization: Basic` (what Label Studio sends to an ML backend; the user name is not read).

A client address that presents more than `max_failed_keys` unknown keys in a minute is refused for
the rest of that minute, a good key included (429 `too_many_failed_keys`): guessing a key is then
a matter of centuries. Behind a proxy (compose's Caddy), `MASKLINE_TRUST_FORWARDED_FOR` makes the
address the one the proxy saw (the last `X-Forwarded-For` entry).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, TypeAlias

from litestar import Request
from litestar.datastructures import Headers
from litestar.params import SkipValidation

from maskline.services.gateway.core.auth_limits import FailedKeys
from maskline.services.gateway.core.errors import TooManyRequests, Unauthorized
from maskline.services.gateway.settings import GatewaySettings

#: API key → tenant (MASKLINE_API_KEYS). Unchecked by litestar, which would copy the mapping on every request.
TenantsByKey: TypeAlias = SkipValidation[Mapping[str, str]]
#: What every route that asks for the `tenant` may answer (its OpenAPI document: openapi.py).
REFUSALS = Unauthorized.coded() + TooManyRequests.coded("too_many_failed_keys")


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
    elif not key and auth.lower().startswith("basic "):
        try:
            key = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    return key


async def provide_tenant(
    request: Request[Any, Any, Any], tenants_by_key: TenantsByKey, failed_keys: FailedKeys, settings: GatewaySettings
) -> str:
    key = api_key(request.headers)
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    client = client_address(request, settings.trust_forwarded_for)
    wait = failed_keys.blocked_for(client, settings.max_failed_keys)
    if wait > 0:
        raise TooManyRequests(
            f"too many unknown API keys from this address: try again in {wait:.0f} s",
            code="too_many_failed_keys",
            retry_after_s=wait,
        )
    tenant = tenants_by_key.get(key)
    if tenant is None:
        failed_keys.failed(client)
        raise Unauthorized("unknown API key")
    return str(tenant)
