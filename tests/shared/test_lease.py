"""The platform-metrics lease through a real nats-server: one holder at a time, handed on when the
holder lets go, and taken over when it stops renewing (crashed) once its key expires."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from maskline.shared.bus import Bus
from maskline.shared.lease import Lease
from tests.conftest import eventually

pytestmark = pytest.mark.nats


async def test_one_holder_at_a_time_and_a_clean_stop_hands_it_on(bus: Bus) -> None:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    a, b = await Lease.opened(bus.js, name, "gateway-a"), await Lease.opened(bus.js, name, "gateway-b")
    assert await a.renew() is True
    assert await b.renew() is False
    assert await a.renew() is True and await b.renew() is False  # renewing keeps it
    stop = asyncio.Event()
    keeping = asyncio.create_task(a.keep(stop))
    await asyncio.sleep(0.1)
    stop.set()
    await keeping  # a clean stop deletes the key
    assert a.held is False
    assert await b.renew() is True and await a.renew() is False


async def test_a_holder_that_stops_renewing_loses_the_lease_when_its_key_expires(bus: Bus) -> None:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    crashed, other = await Lease.opened(bus.js, name, "gateway-a"), await Lease.opened(bus.js, name, "gateway-b")
    assert await crashed.renew() is True  # ... and then nothing more from it
    assert await other.renew() is False
    await eventually(other.renew, timeout=crashed.ttl_s + 15, interval=1.0)
    assert await crashed.renew() is False  # back after its lease lapsed: refused, no second holder
