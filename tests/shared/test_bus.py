"""Publishing through the bus client against a real nats-server: a message id someone else took
first (an outside publisher may set any `Nats-Msg-Id` on its own subject) never makes an event vanish."""

from __future__ import annotations

import uuid

import pytest

from maskline.contracts import seg_v1
from maskline.contracts.envelope import command
from maskline.shared.bus import MSG_ID, Bus, msg_id, read_stream
from tests.shared.service.test_consumer import Ping

pytestmark = pytest.mark.nats


async def test_an_id_taken_by_another_tenants_message_does_not_swallow_the_event(bus: Bus) -> None:
    env = command(seg_v1.REQUESTED, "gateway", Ping(1), tenant="t1")
    taker = f"seg.v1.requested.t2-{uuid.uuid4().hex[:6]}"  # another tenant's own subject
    await bus.js.publish(taker, b"{}", headers={MSG_ID: msg_id(env)})  # first, with the id t1's event will use
    await bus.publish(env)
    mine = [m for m in await read_stream(bus.js, "SEG", "seg.v1.requested.t1") if env.id.encode() in m.data]
    assert len(mine) == 1  # delivered, under an id no one could have taken


async def test_a_retry_of_the_same_event_is_still_one_message(bus: Bus) -> None:
    env = command(seg_v1.REQUESTED, "gateway", Ping(2), tenant="t1")
    await bus.publish(env)
    await bus.publish(env)  # acknowledged as a duplicate of itself: nothing more
    mine = [m for m in await read_stream(bus.js, "SEG", "seg.v1.requested.t1") if env.id.encode() in m.data]
    assert len(mine) == 1
