"""Heartbeats: every instance writes its status to the `fleet` bucket every few seconds.

The NATS services API only shows instances that answer now; an operator also needs the ones that
stopped answering. An instance whose last heartbeat is older than `STALE_AFTER` heartbeats is
reported stale (bounded: 3 x the interval); one that drained cleanly writes `stopped`. Entries
expire from the bucket after an hour (its TTL in the subject table). An instance may write only
keys under its own service's name: a service cannot fake another's heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from nats.js import JetStreamContext

from maskline.shared.kv import BucketStore, entries

BUCKET = "fleet"
STALE_AFTER = 3
log = structlog.get_logger("heartbeat")


def key(service: str, instance: str) -> str:
    return f"{service}.{re.sub(r'[^A-Za-z0-9_=-]', '_', instance)}"


class Heartbeat(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext, service: str, instance: str, interval_s: float) -> None:
        super().__init__(js)
        self.js, self.key, self.interval_s = js, key(service, instance), interval_s

    async def put(self, status: dict[str, Any], state: str = "up") -> None:
        body = {**status, "state": state, "heartbeat_at": time.time(), "interval_s": self.interval_s}
        await self.kv.put(self.key, msgspec.json.encode(body))

    async def run(self, status: Callable[[], Awaitable[dict[str, Any]]], stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.put(await status())
            except Exception as exc:  # a missed beat is what staleness is for: keep beating
                log.warning("heartbeat.failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)


async def fleet(js: JetStreamContext, now: float | None = None) -> list[dict[str, Any]]:
    """Every instance that beat within the bucket's TTL, with `state` up, stale or stopped."""
    now = time.time() if now is None else now
    instances = []
    for raw in (await entries(js, BUCKET)).values():
        body = dict(msgspec.json.decode(raw))
        age = now - float(body["heartbeat_at"])
        if body.get("state") == "up" and age > STALE_AFTER * float(body.get("interval_s", 2.0)):
            body["state"] = "stale"
        body["last_heartbeat_s_ago"] = round(age, 1)
        instances.append(body)
    return sorted(instances, key=lambda b: (str(b.get("service")), str(b.get("instance"))))
