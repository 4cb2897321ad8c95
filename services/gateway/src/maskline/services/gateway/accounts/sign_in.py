"""`/v1/sign-in`, `/v1/sign-out`, `/v1/me`: a person signs in with a password (or single sign-on:
oidc.py) and gets a session cookie; `/v1/me` says who a request is and hands a page its CSRF token.

Failed sign-ins count twice: per client address (as many a minute as unknown API keys, counted
apart from them: a flood of bad sign-ins does not stop the address's systems; 429
`too_many_failed_sign_ins`), and per account: `sign_in_failures` in a row lock it for `lockout_s`
(audited), a good password included (attempts.py). A wrong name, a wrong password and a locked
account get the same answer after the same work; a known account's events follow the answer.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import CacheControlHeader, Cookie

from maskline.contracts.account_v1 import SignInMethod
from maskline.contracts.http_v1 import MeView, SignInBody
from maskline.services.gateway.accounts.attempts import Attempt, try_password
from maskline.services.gateway.accounts.events import in_background, publish_account_change
from maskline.services.gateway.accounts.passwords import Passwords
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import ROLE, SESSION_COOKIE, Caller, client_address
from maskline.services.gateway.core.auth_limits import FailedKeys
from maskline.services.gateway.core.errors import Forbidden, TooManyRequests, Unauthorized, UnsupportedMedia
from maskline.services.gateway.core.idempotent_requests import IDEMPOTENCY, NOT_NEEDED
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.bus import Bus
from maskline.shared.tenants.accounts import Account, Accounts, Sessions

#: A session lasts as long as the `sessions` bucket keeps it (the subject table: 12 hours).
SESSION_S = 12 * 3600
SIGN_IN_REFUSALS = (
    Unauthorized.coded("sign_in_failed")
    + TooManyRequests.coded("too_many_failed_sign_ins", retry_after=True)
    + UnsupportedMedia.coded("unsupported_media_type")
    + Forbidden.coded("cross_site")
)
#: The one answer to a refused sign-in: a wrong name, a wrong password and a locked account alike.
REFUSED = "wrong sign-in name or password (or the account is locked for a while after repeated failures)"


def same_site(request: Request[Any, Any, Any]) -> None:
    """A sign-in posted by another site is refused: a form can send no JSON `Content-Type` without a
    preflight (which nothing here answers), and browsers say where a request came from. Else another
    site could sign a visitor in as the attacker (login CSRF) and collect what they upload."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise UnsupportedMedia("sign in with a JSON body (Content-Type: application/json)", code="unsupported_media_type")
    if request.headers.get("sec-fetch-site", "same-origin") == "cross-site":
        raise Forbidden("a sign-in from another site is refused", code="cross_site")


def audit_failure(bus: Bus, attempt: Attempt, settings: GatewaySettings, client: str) -> None:
    """The failed try of a known account (and the lock it set), published after the answer."""
    account = attempt.account
    assert account is not None
    why = "the account is locked: the password was not checked" if attempt.while_locked else "wrong password"
    failure = publish_account_change(bus, account, "sign-in-failed", by=account.id, client=client, method="password", reason=why)
    in_background(failure)
    if attempt.locked_now:
        reason = f"{settings.sign_in_failures} failed sign-ins in a row: locked for {settings.lockout_s:g} s"
        in_background(publish_account_change(bus, account, "locked", by="lockout", client=client, reason=reason))


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
        operator=caller.operator or (settings.is_operator(caller.tenant) and caller.role == "owner"),
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
        opt={ANSWERS: Answers(refusals=SIGN_IN_REFUSALS), IDEMPOTENCY: NOT_NEEDED},
        cache_control=CacheControlHeader(no_store=True),
    )
    async def sign_in(
        self,
        request: Request[Any, Any, Any],
        data: SignInBody,
        accounts: Accounts,
        sessions: Sessions,
        passwords: Passwords,
        bus: Bus,
        failed_sign_ins: FailedKeys,
        settings: GatewaySettings,
    ) -> Response[MeView]:
        same_site(request)
        client = client_address(request, settings.trust_forwarded_for)
        wait = failed_sign_ins.blocked_for(client, settings.max_failed_keys)
        if wait > 0:
            raise TooManyRequests(
                f"too many failed sign-ins from this address: try again in {wait:.0f} s",
                code="too_many_failed_sign_ins",
                retry_after_s=wait,
            )
        failed_sign_ins.failed(client)  # counted before the check (a burst in parallel is counted whole); forgiven below
        attempt = await try_password(await accounts.by_login(data.login), data.password, accounts, passwords, settings)
        if not attempt.good or attempt.account is None:
            if attempt.account is not None:
                audit_failure(bus, attempt, settings, client)
            raise Unauthorized(REFUSED, code="sign_in_failed")
        failed_sign_ins.forgive(client)
        view, cookie = await signed_in(attempt.account, "password", sessions, bus, settings, client)
        return Response(view, cookies=[cookie])

    @post(
        "/v1/sign-out",
        status_code=200,
        summary="End this browser's session (its cookie is cleared)",
        opt={ROLE: "viewer", IDEMPOTENCY: NOT_NEEDED},
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

    @get(
        "/v1/me",
        summary="Who this request is: tenant, role, person; a session's CSRF token",
        cache_control=CacheControlHeader(no_store=True),
    )
    async def me(self, caller: Caller, settings: GatewaySettings) -> MeView:
        return me_view(caller, settings)
