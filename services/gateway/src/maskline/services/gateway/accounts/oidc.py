"""Single sign-on with an OpenID Connect provider (MASKLINE_OIDC_ISSUER): the authorization code
flow with PKCE (S256), state and nonce. The ID token is checked with joserfc against the
provider's published keys: signature, issuer, audience (our client id), nonce, expiry.

Who may sign in this way: a person an owner added, whose sign-in name is the e-mail address the
provider vouches for (`email`, not `email_verified: false`). The first sign-in binds the account to
the provider's subject (`sub`); afterwards only that subject signs in as it, so an address handed
to someone else at the provider does not hand over the account. Nobody is created by signing in.

The flow is two requests of the browser: `/v1/sign-in/oidc` remembers the state, nonce and PKCE
verifier under a random handle in a cookie of its own (10 minutes) and sends the browser to the
provider; `/v1/sign-in/oidc/callback` takes them back once, exchanges the code and signs the person
in. Refusals go back to the sign-in page with the reason in words (never a token or code).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import msgspec
import structlog
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from litestar import Controller, Request, get
from litestar.datastructures import Cookie
from litestar.params import Parameter
from litestar.response import Redirect

from maskline.services.gateway.accounts.events import publish_account_change
from maskline.services.gateway.accounts.sign_in import signed_in
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import client_address
from maskline.services.gateway.core.auth_limits import FailedKeys
from maskline.services.gateway.core.errors import NotFound, TooManyRequests
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.bus import Bus
from maskline.shared.tenants.accounts import Account, Accounts, PendingSignIn, PendingSignIns, Sessions

log = structlog.get_logger("oidc")
HANDLE_COOKIE = "__Host-maskline-sso"
CALLBACK = "/v1/sign-in/oidc/callback"
#: Signature algorithms accepted in an ID token (never `none`, never a symmetric one).
#: Single sign-ons one client address may start a minute (each holds a row for 10 minutes).
STARTS_PER_MINUTE = 30
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


class SignInRefused(Exception):
    """The sign-in cannot go on: the reason is shown to the person on the sign-in page."""


@dataclass
class Provider:
    """The provider's endpoints and keys, read from its discovery document once (keys again when a
    token names a key the set does not hold: the provider rotated them)."""

    issuer: str
    client_id: str
    client_secret: str
    _metadata: dict[str, Any] = field(default_factory=dict)
    _keys: KeySet | None = None

    async def metadata(self, http: httpx.AsyncClient) -> dict[str, Any]:
        if not self._metadata:
            answer = await http.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
            answer.raise_for_status()
            found = answer.json()
            if found.get("issuer") != self.issuer:
                raise SignInRefused("the identity provider's discovery document names another issuer")
            self._metadata = found
        return self._metadata

    async def keys(self, http: httpx.AsyncClient, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            answer = await http.get((await self.metadata(http))["jwks_uri"])
            answer.raise_for_status()
            self._keys = KeySet.import_key_set(answer.json())
        return self._keys

    async def claims(self, http: httpx.AsyncClient, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once its signature, issuer, audience, nonce and times hold."""
        try:
            try:
                token = jwt.decode(id_token, await self.keys(http), algorithms=ALGORITHMS)
            except (ValueError, JoseError):
                token = jwt.decode(id_token, await self.keys(http, refresh=True), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                nonce={"essential": True, "value": nonce},
                sub={"essential": True},
                exp={"essential": True},
            ).validate(token.claims)
        except (ValueError, JoseError) as exc:
            raise SignInRefused(f"the identity provider's answer did not check out ({type(exc).__name__})") from exc
        return dict(token.claims)


def provider_of(settings: GatewaySettings, providers: dict[str, Provider]) -> Provider:
    if not settings.oidc_issuer or not settings.public_url:
        raise NotFound(
            "single sign-on is not configured here (MASKLINE_OIDC_ISSUER, MASKLINE_PUBLIC_URL)", code="sso_not_configured"
        )
    key = f"{settings.oidc_issuer} {settings.oidc_client_id}"
    if key not in providers:
        providers[key] = Provider(settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret)
    return providers[key]


def back_to(next_: str | None) -> str:
    """A path of this site to return to, never another site's address."""
    path = next_ or "/segment"
    return path if path.startswith("/") and not path.startswith(("//", "/\\")) else "/segment"


def handle_cookie(handle: str = "", max_age: int = 0) -> Cookie:
    return Cookie(key=HANDLE_COOKIE, value=handle, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")


def refused_page(reason: str) -> Redirect:
    return Redirect(f"/sign-in?{urlencode({'error': reason})}", cookies=[handle_cookie()])


#: One per gateway process: the discovery document and keys of each configured provider.
PROVIDERS: dict[str, Provider] = {}


class SingleSignOnController(Controller):
    path = "/v1/sign-in/oidc"
    tags = ["accounts"]

    @get(
        summary="Sign in through the configured OpenID Connect provider: redirects there, then back",
        status_code=302,
        opt={
            ANSWERS: Answers(
                refusals=NotFound.coded("sso_not_configured") + TooManyRequests.coded("too_many_sign_ins", retry_after=True)
            )
        },
    )
    async def start(
        self,
        request: Request[Any, Any, Any],
        sign_ins: PendingSignIns,
        sign_in_starts: FailedKeys,
        settings: GatewaySettings,
        next_: Annotated[str | None, Parameter(query="next")] = None,
    ) -> Redirect:
        provider = provider_of(settings, PROVIDERS)
        client = client_address(request, settings.trust_forwarded_for)
        wait = sign_in_starts.blocked_for(client, STARTS_PER_MINUTE)
        if wait > 0:
            message = f"too many sign-ins started from this address: try again in {wait:.0f} s"
            raise TooManyRequests(message, code="too_many_sign_ins", retry_after_s=wait)
        sign_in_starts.failed(client)
        async with httpx.AsyncClient(timeout=10) as http:
            metadata = await provider.metadata(http)
        handle = secrets.token_urlsafe(32)
        pending = PendingSignIn(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            next=back_to(next_),
            created=time.time(),
        )
        await sign_ins.hold(handle, pending)
        query = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": settings.public_url.rstrip("/") + CALLBACK,
            "scope": "openid email",
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": create_s256_code_challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
        return Redirect(f"{metadata['authorization_endpoint']}?{urlencode(query)}", cookies=[handle_cookie(handle, 600)])

    @get(
        "/callback",
        summary="Where the identity provider sends the browser back: signs the person in, or back to /sign-in with why not",
        status_code=302,
        opt={ANSWERS: Answers(refusals=NotFound.coded("sso_not_configured"))},
    )
    async def callback(
        self,
        request: Request[Any, Any, Any],
        accounts: Accounts,
        sessions: Sessions,
        sign_ins: PendingSignIns,
        bus: Bus,
        settings: GatewaySettings,
        code: Annotated[str | None, Parameter(query="code", max_length=4096)] = None,
        returned_state: Annotated[str | None, Parameter(query="state", max_length=512)] = None,
        error: Annotated[str | None, Parameter(query="error", max_length=200)] = None,
    ) -> Redirect:
        provider = provider_of(settings, PROVIDERS)
        pending = await sign_ins.take(request.cookies.get(HANDLE_COOKIE, ""))
        client = client_address(request, settings.trust_forwarded_for)
        try:
            if pending is None:
                raise SignInRefused("the sign-in took too long or was started in another browser: try again")
            if error:
                raise SignInRefused(f"the identity provider said: {error}")
            if not code or not returned_state or not hmac.compare_digest(returned_state.encode(), pending.state.encode()):
                raise SignInRefused("the identity provider's answer does not belong to this sign-in")
            async with httpx.AsyncClient(timeout=10) as http:
                claims = await self._exchange(http, provider, settings, code, pending)
            account = await self._account(claims, accounts, bus, settings, client)
        except SignInRefused as exc:
            log.info("single sign-on refused", reason=str(exc), client=client)
            return refused_page(str(exc))
        except httpx.HTTPError as exc:
            log.warning("identity provider unreachable", error=str(exc))
            return refused_page("the identity provider could not be reached: try again later")
        _, cookie = await signed_in(account, "oidc", sessions, bus, settings, client)
        return Redirect(pending.next, cookies=[cookie, handle_cookie()])

    @staticmethod
    async def _exchange(
        http: httpx.AsyncClient, provider: Provider, settings: GatewaySettings, code: str, pending: PendingSignIn
    ) -> dict[str, Any]:
        metadata = await provider.metadata(http)
        answer = await http.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": settings.public_url.rstrip("/") + CALLBACK,
                "code_verifier": pending.verifier,
            },
            auth=(provider.client_id, provider.client_secret),
        )
        if answer.status_code != 200:
            raise SignInRefused(f"the identity provider refused the code ({answer.status_code})")
        id_token = answer.json().get("id_token")
        if not isinstance(id_token, str):
            raise SignInRefused("the identity provider sent no ID token")
        return await provider.claims(http, id_token, pending.nonce)

    @staticmethod
    async def _account(claims: dict[str, Any], accounts: Accounts, bus: Bus, settings: GatewaySettings, client: str) -> Account:
        email, subject = claims.get("email"), str(claims["sub"])
        if not isinstance(email, str) or claims.get("email_verified") not in (True, "true"):
            raise SignInRefused("the identity provider vouched for no verified e-mail address")
        account = await accounts.by_login(email)
        if account is None or account.password_hash is not None:
            raise SignInRefused(f"no one signs in as {email} through single sign-on here: ask an owner of your tenant")
        domain = email.rpartition("@")[2].casefold()
        if domain not in settings.oidc_domains_of(account.tenant):
            raise SignInRefused(f"{domain} is not a domain of {account.tenant} for single sign-on (MASKLINE_OIDC_DOMAINS)")

        def bind(current: Account) -> Account | None:
            return msgspec.structs.replace(current, oidc_subject=subject) if current.oidc_subject is None else None

        bound = await accounts.change(account.tenant, account.id, bind)
        if bound is None or bound.oidc_subject != subject:
            if bound is not None:
                reason = "another subject at the identity provider"
                await publish_account_change(
                    bus, bound, "sign-in-failed", by=bound.id, client=client, method="oidc", reason=reason
                )
            raise SignInRefused(f"{email} is bound to another identity at the provider")
        return bound
