"""`/v1/me/keys` and `/v1/me/password`: a person's own API keys and password.

A personal key acts with its owner's role, for as long as the person is in the tenant and the key
is not revoked; it is shown once, stored as its sha256. Any role may keep keys (a viewer's key
reads), at most `MAX_KEYS`. A tenant's API key has no person behind it, so it has no personal keys
(409 `no_person`). Keys are made and the password changed by a signed-in person only (403
`session_required`), so a stolen key cannot make itself more keys nor guess the password; a wrong
current password counts towards the lockout like a failed sign-in. Every key made or revoked and
every password change is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import CacheControlHeader
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from maskline.contracts.http_v1 import PasswordBody, PersonalKeyBody, PersonalKeyView
from maskline.services.gateway.accounts.attempts import try_password
from maskline.services.gateway.accounts.events import publish_account_change
from maskline.services.gateway.accounts.passwords import Passwords
from maskline.services.gateway.accounts.sign_in import audit_failure, signed_in
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import ROLE, Caller, client_address
from maskline.services.gateway.core.errors import Conflict, Forbidden, NotFound, Unauthorized
from maskline.services.gateway.core.idempotent_requests import IDEMPOTENCY, NOT_NEEDED
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.bus import Bus
from maskline.shared.tenants.accounts import Account, Accounts, PersonalKey, Sessions

KeyPath = Annotated[str, Parameter(pattern=r"^k-[0-9a-f]{12}$", description="The key's id (`k-...`)")]
ANY_ROLE = {ROLE: "viewer"}
NO_PERSON = Conflict.coded("no_person")
SIGNED_IN = Forbidden.coded("session_required")
#: Personal keys one person may hold at once.
MAX_KEYS = 20
#: Keys and passwords are answered once and never kept: not by a cache, nor by the idempotency layer.
SECRET = {IDEMPOTENCY: NOT_NEEDED}


def signed_in_person(caller: Caller) -> Account:
    account = person(caller)
    if caller.session is None:
        raise Forbidden("sign in (a browser session) to make keys or change your password", code="session_required")
    return account


def person(caller: Caller) -> Account:
    if caller.account is None:
        raise Conflict("a tenant's API key has no person behind it: sign in, or use a personal key", code="no_person")
    return caller.account


def key_view(key: PersonalKey, secret: str | None = None) -> PersonalKeyView:
    return PersonalKeyView(id=key.id, name=key.name, created=key.created, key=secret)


class PersonalKeyController(Controller):
    path = "/v1/me"
    tags = ["accounts"]

    @get(
        "/keys",
        summary="Your personal API keys (names and ids: a key is shown only when made)",
        opt={**ANY_ROLE, ANSWERS: Answers(refusals=NO_PERSON)},
    )
    async def list_keys(self, caller: Caller) -> list[PersonalKeyView]:
        return [key_view(k) for k in person(caller).keys]

    @post(
        "/keys",
        summary="Make a personal API key (signed in): it acts with your role; keep it, it is not shown again",
        opt={**ANY_ROLE, **SECRET, ANSWERS: Answers(refusals=NO_PERSON + SIGNED_IN + Conflict.coded("too_many_keys"))},
        cache_control=CacheControlHeader(no_store=True),
    )
    async def create_key(
        self,
        request: Request[Any, Any, Any],
        data: PersonalKeyBody,
        accounts: Accounts,
        bus: Bus,
        settings: GatewaySettings,
        caller: Caller,
    ) -> PersonalKeyView:
        account = signed_in_person(caller)
        if len(account.keys) >= MAX_KEYS:
            raise Conflict(f"you hold {MAX_KEYS} keys: revoke one first", code="too_many_keys")
        made = await accounts.create_key(account, data.name)
        if made is None:
            raise Conflict("your account was removed meanwhile", code="no_person")
        account, record, secret = made
        client = client_address(request, settings.trust_forwarded_for)
        await publish_account_change(bus, account, "key-created", by=account.id, client=client, key_id=record.id)
        return key_view(record, secret)

    @delete(
        "/keys/{key_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke one of your personal keys: it stops working at once",
        opt={**ANY_ROLE, ANSWERS: Answers(refusals=NO_PERSON + NotFound.coded("key_not_found"))},
    )
    async def revoke_key(
        self,
        request: Request[Any, Any, Any],
        key_id: KeyPath,
        accounts: Accounts,
        bus: Bus,
        settings: GatewaySettings,
        caller: Caller,
    ) -> None:
        account = person(caller)
        if await accounts.revoke_key(account, key_id) is None:
            raise NotFound(f"you have no key {key_id}", code="key_not_found")
        client = client_address(request, settings.trust_forwarded_for)
        await publish_account_change(bus, account, "key-revoked", by=account.id, client=client, key_id=key_id)

    @put(
        "/password",
        summary="Change your password (signed in): every session of yours ends, this browser gets a new one",
        opt={**ANY_ROLE, **SECRET, ANSWERS: Answers(refusals=NO_PERSON + SIGNED_IN + Unauthorized.coded("sign_in_failed"))},
    )
    async def change_password(
        self,
        request: Request[Any, Any, Any],
        data: PasswordBody,
        accounts: Accounts,
        sessions: Sessions,
        passwords: Passwords,
        bus: Bus,
        settings: GatewaySettings,
        caller: Caller,
    ) -> Response[None]:
        account = signed_in_person(caller)
        client = client_address(request, settings.trust_forwarded_for)
        attempt = await try_password(account, data.current, accounts, passwords, settings)
        if not attempt.good:
            if attempt.account is not None:
                audit_failure(bus, attempt, settings, client)
            raise Unauthorized("the current password is wrong, or the account is locked for a while", code="sign_in_failed")
        hashed = await passwords.hash(data.new)
        changed = await accounts.change(
            account.tenant, account.id, lambda a: msgspec.structs.replace(a, password_hash=hashed, epoch=a.epoch + 1)
        )
        if changed is None:
            raise Conflict("your account was removed meanwhile", code="no_person")
        await publish_account_change(bus, changed, "password-changed", by=changed.id, client=client)
        await sessions.end(caller.token)
        _, cookie = await signed_in(
            changed, caller.session.method if caller.session else "password", sessions, bus, settings, client
        )
        return Response(None, cookies=[cookie])
