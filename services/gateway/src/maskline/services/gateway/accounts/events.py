"""Each change to a person's access as an audited `account.v1.changed`, all of a tenant's on one
audit trail (its job id), so `GET /v1/audit?job=accounts-<tenant>` tells who did what to whose access."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import structlog

from maskline.contracts import account_v1
from maskline.contracts.account_v1 import AccountAction
from maskline.contracts.envelope import job_event, new_trace_id
from maskline.shared.bus import Bus
from maskline.shared.tenants.accounts import Account

log = structlog.get_logger("accounts")
#: Events published after the answer went out (see `in_background`), held until they are sent.
_SENDING: set[asyncio.Task[None]] = set()


def in_background(publishing: Coroutine[Any, Any, None]) -> None:
    """Publish without holding the answer: a refused sign-in answers after the same work whether or
    not the name exists (the event of a known name would otherwise take longer)."""

    async def logged() -> None:
        try:
            await publishing
        except Exception:
            log.exception("an account event was not published")

    task = asyncio.get_running_loop().create_task(logged())
    _SENDING.add(task)
    task.add_done_callback(_SENDING.discard)


def accounts_trail_id(tenant: str) -> str:
    return f"accounts-{tenant}"[:128]


async def publish_account_change(
    bus: Bus, account: Account, action: AccountAction, *, by: str, client: str, **fields: Any
) -> None:
    change = account_v1.AccountChanged(
        action=action, user=account.id, login=account.login, by=by, role=account.role, client=client, **fields
    )
    await _publish(bus, account.tenant, change)


async def publish_policy_change(bus: Bus, tenant: str, words: str, *, by: str, client: str) -> None:
    await _publish(bus, tenant, account_v1.AccountChanged(action="policy-changed", by=by, client=client, reason=words))


async def _publish(bus: Bus, tenant: str, change: account_v1.AccountChanged) -> None:
    await bus.publish(
        job_event(
            account_v1.CHANGED,
            "gateway",
            change,
            tenant=tenant,
            job_id=accounts_trail_id(tenant),
            trace_id=new_trace_id(),
            parts=(change.action, uuid.uuid4().hex[:12]),  # every change is its own event
        )
    )
