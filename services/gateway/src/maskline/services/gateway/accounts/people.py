"""`/v1/users`: the people of your tenant and their roles (owners only), and what members may do
besides starting jobs. Every addition, role change and removal is audited (`account.v1.changed`).

An owner cannot change their own role or remove themselves (another owner can): a tenant is never
left without the person who was managing it by a slip of the mouse. The tenant's API keys act as
owners, so a tenant with no owner left is recovered through them.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from maskline.contracts.audit_v1 import AuditRecord
from maskline.contracts.http_v1 import AccountPolicy, RoleBody, UserBody, UserView
from maskline.services.gateway.accounts.events import accounts_trail_id, publish_account_change, publish_policy_change
from maskline.services.gateway.accounts.passwords import Passwords
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import ROLE, Caller, client_address
from maskline.services.gateway.core.errors import Conflict, NotFound, Unprocessable
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.bus import Bus
from maskline.shared.tenants.accounts import Account, Accounts, LoginTaken, readable_login
from maskline.shared.tenants.trails import job_trail

UserPath = Annotated[str, Parameter(pattern=r"^u-[0-9a-f]{16}$", description="The person's id (`u-...`)")]
OWNER = {ROLE: "owner"}


def user_view(account: Account) -> UserView:
    locked = account.locked_until
    return UserView(
        id=account.id,
        login=account.login,
        role=account.role,
        created=account.created,
        password=account.password_hash is not None,
        locked_until=datetime.datetime.fromtimestamp(locked, datetime.UTC).isoformat() if locked else None,
        keys=len(account.keys),
    )


async def _someone(accounts: Accounts, tenant: str, user: str) -> Account:
    account = await accounts.get(tenant, user)
    if account is None:
        raise NotFound(f"no person {user} in your tenant", code="user_not_found")
    return account


def _not_yourself(caller: Caller, user: str) -> None:
    if caller.account is not None and caller.account.id == user:
        raise Conflict("you cannot change your own role or remove yourself: another owner can", code="own_account")


class PeopleController(Controller):
    path = "/v1/users"
    tags = ["accounts"]

    @get(summary="The people of your tenant and their roles (owners)", opt=OWNER)
    async def list_users(self, accounts: Accounts, tenant: str) -> list[UserView]:
        return [user_view(a) for a in await accounts.of_tenant(tenant)]

    @post(
        summary="Add a person with a role; with a password they may sign in with it, else through single sign-on",
        opt={
            **OWNER,
            ANSWERS: Answers(refusals=Conflict.coded("login_taken", "too_many_people") + Unprocessable.coded("invalid_login")),
        },
    )
    async def add_user(
        self,
        request: Request[Any, Any, Any],
        data: UserBody,
        accounts: Accounts,
        passwords: Passwords,
        bus: Bus,
        settings: GatewaySettings,
        caller: Caller,
    ) -> UserView:
        if not readable_login(data.login):
            raise Unprocessable("a sign-in name without control or invisible characters, please", code="invalid_login")
        if len(await accounts.of_tenant(caller.tenant)) >= settings.max_people:
            raise Conflict(f"{caller.tenant} has {settings.max_people} people (MASKLINE_MAX_PEOPLE)", code="too_many_people")
        hashed = await passwords.hash(data.password) if data.password is not None else None
        try:
            account = await accounts.add(caller.tenant, data.login, data.role, hashed)
        except LoginTaken as exc:
            raise Conflict(f"someone already signs in as {data.login!r}", code="login_taken") from exc
        client = client_address(request, settings.trust_forwarded_for)
        await publish_account_change(bus, account, "user-added", by=caller.by, client=client)
        return user_view(account)

    @put(
        "/{user:str}/role",
        summary="Change a person's role (not your own)",
        opt={**OWNER, ANSWERS: Answers(refusals=NotFound.coded("user_not_found") + Conflict.coded("own_account"))},
    )
    async def change_role(
        self,
        request: Request[Any, Any, Any],
        user: UserPath,
        data: RoleBody,
        accounts: Accounts,
        bus: Bus,
        settings: GatewaySettings,
        caller: Caller,
    ) -> UserView:
        _not_yourself(caller, user)
        before = await _someone(accounts, caller.tenant, user)
        after = await accounts.change(caller.tenant, user, lambda a: msgspec.structs.replace(a, role=data.role))
        if after is None:
            raise NotFound(f"no person {user} in your tenant", code="user_not_found")
        if after.role != before.role:
            client = client_address(request, settings.trust_forwarded_for)
            await publish_account_change(bus, after, "role-changed", by=caller.by, client=client, previous_role=before.role)
        return user_view(after)

    @delete(
        "/{user:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Remove a person: their sessions and personal keys end at once",
        opt={**OWNER, ANSWERS: Answers(refusals=NotFound.coded("user_not_found") + Conflict.coded("own_account"))},
    )
    async def remove_user(
        self,
        request: Request[Any, Any, Any],
        user: UserPath,
        accounts: Accounts,
        bus: Bus,
        settings: GatewaySettings,
        caller: Caller,
    ) -> None:
        _not_yourself(caller, user)
        account = await _someone(accounts, caller.tenant, user)
        await accounts.remove(account)
        client = client_address(request, settings.trust_forwarded_for)
        await publish_account_change(bus, account, "user-removed", by=caller.by, client=client)

    @get("/trail", summary="The audited sign-ins, key and role changes of your tenant's people (owners)", opt=OWNER)
    async def trail(self, bus: Bus, tenant: str) -> list[AuditRecord]:
        return await job_trail(bus.js, tenant, accounts_trail_id(tenant))

    @get("/policy", summary="What your tenant's members may do besides starting jobs")
    async def policy(self, accounts: Accounts, tenant: str) -> AccountPolicy:
        return await accounts.policy(tenant)

    @put("/policy", summary="Let members change aliases or grants of your tenant's models (owners; audited)", opt=OWNER)
    async def set_policy(
        self,
        request: Request[Any, Any, Any],
        data: AccountPolicy,
        accounts: Accounts,
        bus: Bus,
        settings: GatewaySettings,
        caller: Caller,
    ) -> AccountPolicy:
        await accounts.set_policy(caller.tenant, data)
        words = f"members may change aliases: {data.members_change_aliases}; grants: {data.members_change_grants}"
        await publish_policy_change(
            bus, caller.tenant, words, by=caller.by, client=client_address(request, settings.trust_forwarded_for)
        )
        return data
