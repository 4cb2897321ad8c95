"""`/v1/me/keys` and `/v1/me/password`: a person's own API keys and password.

A personal key acts with its owner's role, for as long as the person is in the tenant and the key
is not revoked; it is shown once, stored as its sha256. Any role may keep keys (a viewer's key
reads). A tenant's API key has no person behind it, so it has no personal keys (409 `no_person`).
Every key made or revoked and every password change is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from maskline.contracts.http_v1 import PasswordBody, PersonalKeyBody, PersonalKeyView
from maskline.services.gateway.accounts.events import publish_account_change
from maskline.services.gateway.accounts.passwords import Passwords
from maskline.services.gateway.accounts.sign_in import signed_in
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import ROLE, Caller, client_address
from maskline.services.gateway.core.errors import Conflict, NotFound, Unauthorized
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.bus import Bus
from maskline.shared.tenants.accounts import Account, Accounts, PersonalKey, Sessions

KeyPath = Annotated[str, Parameter(pattern=r"^k-[0-9a-f]{12}$", description="The key's id (`k-...`)")]
ANY_ROLE = {ROLE: "viewer"}
NO_PERSON = Conflict.coded("no_person")


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
        summary="Make a personal API key: it acts with your role; keep it, it is not shown again",
        opt={**ANY_ROLE, ANSWERS: Answers(refusals=NO_PERSON)},
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
        made = await accounts.create_key(person(caller), data.name)
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
        summary="Change your password: every session of yours ends, this browser gets a new one",
        opt={**ANY_ROLE, ANSWERS: Answers(refusals=NO_PERSON + Unauthorized.coded("sign_in_failed"))},
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
        account = person(caller)
        if not await passwords.verify(account.password_hash, data.current):
            raise Unauthorized("the current password is wrong", code="sign_in_failed")
        hashed = await passwords.hash(data.new)
        changed = await accounts.change(
            account.tenant, account.id, lambda a: msgspec.structs.replace(a, password_hash=hashed, epoch=a.epoch + 1)
        )
        if changed is None:
            raise Conflict("your account was removed meanwhile", code="no_person")
        client = client_address(request, settings.trust_forwarded_for)
        await publish_account_change(bus, changed, "password-changed", by=changed.id, client=client)
        if caller.session is None:
            return Response(None)
        await sessions.end(caller.token)
        _, cookie = await signed_in(changed, caller.session.method, sessions, bus, settings, client)
        return Response(None, cookies=[cookie])
