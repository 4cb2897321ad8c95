"""Heartbeats in the fleet bucket through a real nats-server: up, stale after 3 missed beats, stopped."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from maskline.shared.bus import Bus
from maskline.shared.operations.heartbeat import STALE_AFTER, Heartbeat, fleet

pytestmark = pytest.mark.nats


def mine(rows: list[dict], service: str) -> dict:
    return next(r for r in rows if r["service"] == service)


async def test_states_follow_the_beats(bus: Bus) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    beat = await Heartbeat.opened(bus.js, service, "host:1/a b", interval_s=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(beat.run(lambda: _status(service), stop))
    await asyncio.sleep(0.5)
    row = mine(await fleet(bus.js), service)
    assert row["state"] == "up" and row["instance"] == "host:1/a b" and row["last_heartbeat_s_ago"] < 1
    stop.set()
    await task
    # Silent for longer than STALE_AFTER intervals: stale (judged at a later "now").
    later = time.time() + STALE_AFTER * 0.2 + 0.1
    assert mine(await fleet(bus.js, now=later), service)["state"] == "stale"
    await beat.put(await _status(service), state="stopped")
    assert mine(await fleet(bus.js, now=later + 60), service)["state"] == "stopped"


async def _status(service: str) -> dict:
    return {"service": service, "instance": "host:1/a b", "ready": True, "version": "t"}
