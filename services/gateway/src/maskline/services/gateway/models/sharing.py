"""Sharing models between tenants: ask for access, grant or refuse it, revoke it, withdraw — each
step checked against who may take it, stored in the `grants` bucket and published as an audited
`model.v1.access.changed` event."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK

from maskline.contracts import model_v1
from maskline.contracts.audit_v1 import AuditRecord
from maskline.contracts.envelope import job_event, new_trace_id, now
from maskline.contracts.model_v1 import AccessState
from maskline.contracts.subjects import PLATFORM_TENANT
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import MEMBERS_IF, ROLE
from maskline.services.gateway.core.errors import Conflict, Forbidden, NotFound, TooManyRequests
from maskline.shared.bus import Bus
from maskline.shared.models.access import AccessRefused, Grant, Grants, grant_id
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.tenants.trails import job_trail

#: Requests for access one tenant may have waiting at a time: asking cannot flood other tenants' lists.
MAX_OPEN_REQUESTS = 20
#: A step the grant's state does not allow (`_step`).
_ACCESS_STATE = Conflict.coded("access_state")

OwnerParam = Annotated[
    str | None,
    Parameter(
        query="owner",
        pattern="^[A-Za-z0-9_-]{1,128}$",
        description="The tenant that owns the model (for a model shared with you; default: yours, else the platform's)",
    ),
]


class AccessNote(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class AccessDecision(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    state: Literal["granted", "refused", "revoked"]
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class AccessController(Controller):
    tags = ["sharing"]

    async def _step(
        self, grants: Grants, bus: Bus, owner: str, name: str, grantee: str, state: AccessState, by: str, note: str
    ) -> Grant:
        try:
            grant = await grants.change(owner, name, grantee, state, by, note)
        except AccessRefused as exc:
            raise Conflict(str(exc), code="access_state") from exc
        gid = grant_id(owner, name, grantee)
        await bus.publish(
            job_event(  # every step of a grant is its own event: the id tells them apart
                model_v1.ACCESS_CHANGED,
                "gateway",
                model_v1.AccessChanged(owner=owner, model=name, grantee=grantee, state=state, by=by, note=note),
                tenant=owner,
                job_id=gid,
                trace_id=new_trace_id(),
                parts=(state, uuid.uuid4().hex[:12]),
            )
        )
        return grant

    @post(
        "/v1/models/{name:str}/access-requests",
        status_code=HTTP_200_OK,
        summary="Ask the owner of a model for access to it (the same answer whether or not it exists)",
        opt={ANSWERS: Answers(refusals=_ACCESS_STATE + TooManyRequests.coded("too_many_access_requests"))},
    )
    async def ask(
        self, registry: ModelRegistry, grants: Grants, bus: Bus, tenant: str, name: str, owner: OwnerParam, data: AccessNote
    ) -> Grant:
        if not owner or owner == tenant:
            raise Conflict("name the owner of the model you ask access to (?owner=...)", code="access_state")
        if owner == PLATFORM_TENANT:
            raise Conflict("the platform's models are public: no access needed", code="access_state")
        # Another tenant's private models are not disclosed: a request for one that does not exist is
        # answered as one that does, and is simply never seen by anyone.
        asked = Grant(owner=owner, model=name, grantee=tenant, state="requested", requested=now(), note=data.note)
        if not await registry.exists(owner, name):
            return asked
        current = await grants.get(owner, name, tenant)
        if current is not None and current.state == "requested":
            return current  # asked again: the same request, not another line in the owner's list
        if sum(1 for g in await grants.involving(tenant) if g.grantee == tenant and g.state == "requested") >= MAX_OPEN_REQUESTS:
            raise TooManyRequests(
                f"you have {MAX_OPEN_REQUESTS} requests for access waiting for their owners: withdraw one first",
                code="too_many_access_requests",
            )
        return await self._step(grants, bus, owner, name, tenant, "requested", tenant, data.note)

    @delete(
        "/v1/models/{name:str}/access-requests",
        status_code=HTTP_200_OK,
        summary="Withdraw your request for (or give up your access to) a model",
        opt={ANSWERS: Answers(refusals=_ACCESS_STATE)},
    )
    async def withdraw(self, grants: Grants, bus: Bus, tenant: str, name: str, owner: OwnerParam) -> Grant:
        if not owner:
            raise Conflict("name the owner of the model (?owner=...)", code="access_state")
        return await self._step(grants, bus, owner, name, tenant, "withdrawn", tenant, "")

    @put(
        "/v1/models/{name:str}/access/{grantee:str}",
        status_code=HTTP_200_OK,
        summary="Grant, refuse or revoke another tenant's access to your model (owner only)",
        opt={ROLE: "owner", MEMBERS_IF: "grants", ANSWERS: Answers(refusals=_ACCESS_STATE + NotFound.coded("model_not_found"))},
    )
    async def decide(
        self, registry: ModelRegistry, grants: Grants, bus: Bus, tenant: str, name: str, grantee: str, data: AccessDecision
    ) -> Grant:
        if not await registry.exists(tenant, name):
            raise NotFound(f"you have no model {name}", code="model_not_found")
        if await grants.get(tenant, name, grantee) is None:
            raise NotFound(f"{grantee} has not asked for access to {name}")
        return await self._step(grants, bus, tenant, name, grantee, data.state, tenant, data.note)

    @get("/v1/access", summary="Access to models: what you asked others for, and what others asked you for")
    async def involving(self, grants: Grants, tenant: str) -> list[Grant]:
        return await grants.involving(tenant)

    @get(
        "/v1/models/{name:str}/access/{grantee:str}/trail",
        summary="The audited steps of one grant (owner and grantee only)",
        opt={ANSWERS: Answers(refusals=Forbidden.coded())},
    )
    async def trail(
        self, grants: Grants, bus: Bus, tenant: str, name: str, grantee: str, owner: OwnerParam = None
    ) -> list[AuditRecord]:
        owner = owner or tenant
        if tenant not in (owner, grantee):
            raise Forbidden("only the owner and the grantee see a grant's trail")
        if await grants.get(owner, name, grantee) is None:
            raise NotFound(f"no access of {grantee} to {owner}/{name} was ever asked for")
        return await job_trail(bus.js, owner, grant_id(owner, name, grantee))
