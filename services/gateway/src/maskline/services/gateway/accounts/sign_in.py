"""`/v1/sign-in`, `/v1/sign-out`, `/v1/me`: a person signs in with a password (or single sign-on:
oidc.py) and gets a session cookie; `/v1/me` says who a request is and hands a page its CSRF token.

Failed sign-ins count twice: per client address (the same limit as unknown API keys), and per
account: `sign_in_failures` in a row lock it for `lockout_s` (429 `account_locked`, audited), a
good password included. A wrong name and a wrong password get the same answer after the same work.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie

from maskline.contracts.account_v1 import SignInMethod
from maskline.contracts.http_v1 import MeView, SignInBody
from maskline.services.gateway.accounts.events import publish_account_change
from maskline.services.gateway.accounts.passwords import Passwords
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import ROLE, SESSION_COOKIE, Caller, client_address
from maskline.services.gateway.core.auth_limits import FailedKeys
from maskline.services.gateway.core.errors import TooManyRequests, Unauthorized
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.bus import Bus
from maskline.shared.tenants.accounts import Account, Accounts, Sessions, failed

#: A session lasts as long as the `sessions` bucket keeps it (the subject table: 12 hours).
SESSION_S = 12 * 3600
SIGN_IN_REFUSALS = Unauthorized.coded("sign_in_failed") + TooManyRequests.coded(
    "account_locked", "too_many_failed_keys", retry_after=True
)


def session_cookie(token: str, max_age: int = SESSION_S) -> Cookie:
    return Cookie(key=SESSION_COOKIE, value=token, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")


def sign_in_methods(settings: GatewaySettings) -> tuple[SignInMethod, ...]:
    return ("password", "oidc") if settings.oidc_issuer else ("password",)


def me_view(caller: Caller, settings: GatewaySettings) -> MeView:
    account = caller.account
    return MeView(
        tenant=caller.tenant,
        role=caller.role,
        via=caller.via,
        operator=settings.is_operator(caller.tenant),
        user=account.id if account else None,
        login=account.login if account else None,
        csrf_token=caller.session.csrf if caller.session else None,
        sign_in_methods=sign_in_methods(settings),
    )


async def signed_in(
    account: Account, method: SignInMethod, sessions: Sessions, bus: Bus, settings: GatewaySettings, client: str
) -> tuple[MeView, Cookie]:
    """A new session for the account (a new token, whatever cookie the browser had), audited."""
    token, session = await sessions.start(account, method)
    await publish_account_change(bus, account, "signed-in", by=account.id, client=client, method=method)
    caller = Caller(tenant=account.tenant, role=account.role, via="session", account=account, session=session, token=token)
    return me_view(caller, settings), session_cookie(token)


class SignInController(Controller):
    tags = ["accounts"]

    @post(
        "/v1/sign-in",
        status_code=200,
        summary="Sign in with a name and password: the answer sets the session cookie",
        opt={ANSWERS: Answers(refusals=SIGN_IN_REFUSALS)},
    )
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        data: SignInBody,
        accounts: Accounts,
        sessions: Sessions,
        passwords: Passwords,
        bus: Bus,
        failed_keys: FailedKeys,
        settings: GatewaySettings,
    ) -> Response[MeView]:
        client = client_address(request, settings.trust_forwarded_for)
        wait = failed_keys.blocked_for(client, settings.max_failed_keys)
        if wait > 0:
            raise TooManyRequests(
                f"too many failed sign-ins from this address: try again in {wait:.0f} s",
                code="too_many_failed_keys",
                retry_after_s=wait,
            )
        account = await accounts.by_login(data.login)
        good = await passwords.verify(account.password_hash if account else None, data.password)
        if account is not None and account.locked_until > time.time():
            wait = account.locked_until - time.time()
            raise TooManyRequests(
                f"this account is locked after repeated failed sign-ins: try again in {wait:.0f} s",
                code="account_locked",
                retry_after_s=wait,
            )
        if account is None or not good:
            failed_keys.failed(client)
            if account is not None:
                await self._failed(account, accounts, bus, settings, client)
            raise Unauthorized("wrong sign-in name or password", code="sign_in_failed")
        if account.failures:
            account = (
                await accounts.change(account.tenant, account.id, lambda a: msgspec.structs.replace(a, failures=0)) or account
            )
        view, cookie = await signed_in(account, "password", sessions, bus, settings, client)
        return Response(view, cookies=[cookie])

    @staticmethod
    async def _failed(account: Account, accounts: Accounts, bus: Bus, settings: GatewaySettings, client: str) -> None:
        after = await accounts.change(
            account.tenant, account.id, lambda a: failed(a, settings.sign_in_failures, settings.lockout_s)
        )
        await publish_account_change(bus, account, "sign-in-failed", by=account.id, client=client, method="password")
        if after is not None and after.locked_until > time.time():
            reason = f"{settings.sign_in_failures} failed sign-ins in a row: locked for {settings.lockout_s:g} s"
            await publish_account_change(bus, account, "locked", by="lockout", client=client, reason=reason)

    @post(
        "/v1/sign-out",
        status_code=200,
        summary="End this browser's session (its cookie is cleared)",
        opt={ROLE: "viewer"},
    )
    async def sign_out(
        self, request: Request[Any, Any, Any], caller: Caller, sessions: Sessions, bus: Bus, settings: GatewaySettings
    ) -> Response[None]:
        if caller.session is not None and caller.account is not None:
            await sessions.end(caller.token)
            client = client_address(request, settings.trust_forwarded_for)
            await publish_account_change(bus, caller.account, "signed-out", by=caller.account.id, client=client)
        return Response(None, cookies=[session_cookie("", max_age=0)])

    @get("/v1/sign-in/methods", summary="How people may sign in here: `password`, and `oidc` when single sign-on is configured")
    async def methods(self, settings: GatewaySettings) -> tuple[SignInMethod, ...]:
        return sign_in_methods(settings)

    @get("/v1/me", summary="Who this request is: tenant, role, person; a session's CSRF token")
    async def me(self, caller: Caller, settings: GatewaySettings) -> MeView:
        return me_view(caller, settings)
