"""Who is calling, and may they do this: every route that asks for the `tenant` (or the `caller`)
passes here, so a new route cannot skip it.

A request is one of:
- a **system** with the tenant's API key (MASKLINE_API_KEYS): acts as the tenant's `owner`;
- a **person** with a personal API key (`mlk_...`, `/v1/me/keys`): acts with their account's role;
- a **signed-in browser**, by its session cookie: the account's role, and every request that
  changes something carries the session's CSRF token in `X-CSRF-Token` (a page reads it from
  `/v1/me`; another site can neither read it nor make the browser send it).
Keys arrive as `Authorization: Bearer <key>` or `X-API-Key: <key>`, or as the password of
`Authorization: Basic` (what Label Studio sends to an ML backend; the user name is not read). A
key wins over a cookie. The role is read from the account on every request, so a role change, a
removed person or a revoked key counts from the next request on.

**Roles per route.** A route needs `viewer` to read (GET, HEAD) and `member` for anything else
(start, cancel, register, delete), unless it says otherwise with `opt={ROLE: ...}` (people,
grants, aliases and the tenant's settings need `owner`). `opt={MEMBERS_IF: "aliases"}` lets
members in when the tenant's owners allowed it (`PUT /v1/users/policy`).

A client address that presents more than `max_failed_keys` unknown keys in a minute is refused for
the rest of that minute, a good key included (429 `too_many_failed_keys`): guessing a key is then
a matter of centuries. Behind a proxy (compose's Caddy), `MASKLINE_TRUST_FORWARDED_FOR` makes the
address the one the proxy saw (the last `X-Forwarded-For` entry).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from typing import Any, Literal, TypeAlias, cast

from litestar import Request
from litestar.datastructures import Headers
from litestar.handlers.base import BaseRouteHandler
from litestar.params import SkipValidation
from litestar.types import Scope

from maskline.contracts.account_v1 import Role, role_allows
from maskline.services.gateway.core.auth_limits import FailedKeys
from maskline.services.gateway.core.errors import Forbidden, TooManyRequests, Unauthorized
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.tenants.accounts import Account, Accounts, Session, Sessions

#: API key → tenant (MASKLINE_API_KEYS). Unchecked by litestar, which would copy the mapping on every request.
TenantsByKey: TypeAlias = SkipValidation[Mapping[str, str]]
#: The browser's session cookie. `__Host-`: the browser keeps it only if it is Secure, for this
#: host alone and for every path, so no sibling domain or plain-HTTP page can set or read it.
SESSION_COOKIE = "__Host-maskline-session"
CSRF_HEADER = "x-csrf-token"
#: Route options: the role a route needs, and the tenant policy that lets members in as well.
ROLE, MEMBERS_IF = "role", "members_if"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
#: What every route that asks for the `tenant` may answer (its OpenAPI document: openapi.py).
REFUSALS = (
    Unauthorized.coded("unauthorized", "session_ended")
    + TooManyRequests.coded("too_many_failed_keys")
    + Forbidden.coded("role_forbidden", "csrf_failed")
)
Via = Literal["tenant-key", "personal-key", "session"]
#: Where a request's caller is kept once worked out (its ASGI scope).
CALLER = "maskline.caller"


@dataclass(frozen=True)
class Caller:
    """Who a request is: the tenant it acts for, its role, and the person (none for a tenant key)."""

    tenant: str
    role: Role
    via: Via
    account: Account | None = None
    session: Session | None = None
    token: str = ""
    """The session cookie's token (signing out ends it)."""
    operator: bool = False
    """An owner (or the key) of an operator tenant (MASKLINE_OPERATORS): sees every tenant's jobs,
    dead letters and trail. A viewer or member of that tenant sees their tenant's only."""

    @property
    def by(self) -> str:
        """Who did it, as an audit record says it: the person's id, or `tenant-key`."""
        return self.account.id if self.account is not None else "tenant-key"


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


def session_token(headers: Headers) -> str:
    """The session cookie's token, read from the raw header (the middlewares have no parsed cookies)."""
    raw = headers.get("cookie", "")
    if SESSION_COOKIE not in raw:
        return ""
    try:
        morsel = SimpleCookie(raw).get(SESSION_COOKIE)
    except CookieError:
        return ""
    return morsel.value if morsel is not None else ""


@dataclass(frozen=True)
class Identities:
    """Tells a request's caller from its headers: tenant keys, personal keys, session cookies."""

    tenants_by_key: Callable[[], Mapping[str, str]]
    accounts: Callable[[], Accounts]
    sessions: Callable[[], Sessions]

    async def caller_of(self, scope: Scope) -> Caller | None:
        """The request's caller, worked out once: the admission guard, the idempotency layer and the
        route's own check share it (a person's costs two key-value reads; not three times)."""
        held = cast("dict[str, Any]", scope)
        if CALLER not in held:
            held[CALLER] = await self.identify(Headers.from_scope(scope))
        return cast("Caller | None", held[CALLER])

    async def identify(self, headers: Headers) -> Caller | None:
        key = api_key(headers)
        if not key and not session_token(headers):
            return None
        if key:
            tenant = self.tenants_by_key().get(key)
            if tenant is not None:
                return Caller(tenant=str(tenant), role="owner", via="tenant-key")
            account = await self.accounts().by_key(key)
            return (
                None if account is None else Caller(tenant=account.tenant, role=account.role, via="personal-key", account=account)
            )
        token = session_token(headers)
        session = await self.sessions().get(token) if token else None
        if session is None:
            return None
        account = await self.accounts().get(session.tenant, session.user)
        if account is None or account.epoch != session.epoch:
            return None
        return Caller(tenant=account.tenant, role=account.role, via="session", account=account, session=session, token=token)

    async def tenant_of(self, scope: Scope) -> str | None:
        """The tenant a request acts for, or None (the route answers 401): the admission guard,
        which runs before the route's own check."""
        caller = await self.caller_of(scope)
        return None if caller is None else caller.tenant

    async def claimant_of(self, scope: Scope) -> str | None:
        """Whose Idempotency-Keys a request's is among: the tenant's (its API keys) or one person's
        (`<tenant>.<user id>`), so that nobody is replayed another person's answer."""
        caller = await self.caller_of(scope)
        if caller is None:
            return None
        return caller.tenant if caller.account is None else f"{caller.tenant}.{caller.account.id}"


def needed_role(handler: BaseRouteHandler, method: str) -> Role:
    role: Role | None = handler.opt.get(ROLE)
    return role if role is not None else ("viewer" if method in READS else "member")


async def provide_caller(
    request: Request[Any, Any, Any], identities: Identities, failed_keys: FailedKeys, settings: GatewaySettings
) -> Caller:
    key = api_key(request.headers)
    if not key and SESSION_COOKIE not in request.cookies:
        raise Unauthorized("sign in, or send an API key: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    client = client_address(request, settings.trust_forwarded_for)
    wait = failed_keys.blocked_for(client, settings.max_failed_keys)
    if wait > 0:
        raise TooManyRequests(
            f"too many unknown API keys from this address: try again in {wait:.0f} s",
            code="too_many_failed_keys",
            retry_after_s=wait,
        )
    caller = await identities.caller_of(request.scope)
    if caller is None:
        if key:
            failed_keys.failed(client)
            raise Unauthorized("unknown API key")
        raise Unauthorized("your session has ended: sign in again", code="session_ended")
    await _check_role(caller, request, identities)
    caller = replace(caller, operator=settings.is_operator(caller.tenant) and caller.role == "owner")
    if caller.session is not None and request.method not in READS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), caller.session.csrf.encode()):
            raise Forbidden("a signed-in change needs the session's X-CSRF-Token header (GET /v1/me)", code="csrf_failed")
    return caller


async def _check_role(caller: Caller, request: Request[Any, Any, Any], identities: Identities) -> None:
    handler = request.route_handler
    needed = needed_role(handler, request.method)
    if role_allows(caller.role, needed):
        return
    allowed_by = handler.opt.get(MEMBERS_IF)
    if allowed_by is not None and caller.role == "member":
        policy = await identities.accounts().policy(caller.tenant)
        if getattr(policy, f"members_change_{allowed_by}"):
            return
    raise Forbidden(f"this needs the {needed} role in {caller.tenant}; yours is {caller.role}", code="role_forbidden")


async def provide_tenant(caller: Caller) -> str:
    return caller.tenant
