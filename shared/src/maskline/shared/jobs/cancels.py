"""Cancelled segmentations: the gateway marks a job in the `cancels` bucket; every stage keeps the
marks in memory by following the bucket's stream (no lookup per message) and skips the queued work
of a cancelled job. The job's completion fence, claimed by the cancel, keeps any output of work already
under way from standing (merge's attempt loses and removes its files)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from maskline.shared.kv import BucketStore

BUCKET = "cancels"
PREFIX = f"$KV.{BUCKET}."
log = structlog.get_logger("cancels")


def cancel_key(tenant: str, job_id: str) -> str:
    return f"{tenant}.{job_id}"


class Cancellations(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)
        self._cancelled: set[str] = set()
        self._sub: Any = None

    async def mark(self, tenant: str, job_id: str) -> None:
        await self.kv.put(cancel_key(tenant, job_id), b"1")

    def cancelled(self, tenant: str, job_id: str) -> bool:
        return cancel_key(tenant, job_id) in self._cancelled

    async def follow(self) -> None:
        """Read every mark there is now (before the consumers start), through a pull consumer
        that `watch` keeps reading new marks from."""
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60.0)
        self._sub = await self.js.pull_subscribe(f"{PREFIX}>", stream=f"KV_{BUCKET}", config=config)
        remaining = (await self._sub.consumer_info()).num_pending or 0
        while remaining > 0:
            msgs = await self._sub.fetch(min(remaining, 256), timeout=5.0)
            remaining -= len(msgs)
            self._take(msgs)

    def _take(self, msgs: list[Any]) -> None:
        for msg in msgs:
            if not (msg.headers or {}).get("KV-Operation"):
                self._cancelled.add(msg.subject[len(PREFIX) :])

    async def watch(self, stop: asyncio.Event) -> None:
        """Keep the set current until `stop` is set (a new consumer after the bus was away)."""
        while not stop.is_set():
            try:
                if self._sub is None:
                    await self.follow()
                with contextlib.suppress(TimeoutError):  # a new mark comes at once; an idle wait costs a request per 5 s
                    self._take(await self._sub.fetch(256, timeout=5.0))
            except Exception as exc:  # the bus was away, or the consumer timed out: follow again
                log.warning("cancels.watch_failed", error=str(exc))
                self._sub = None
                await asyncio.sleep(1.0)
