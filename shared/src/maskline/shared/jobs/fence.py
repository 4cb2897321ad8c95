"""Exactly one final event per job, whatever worker finishes it, crashes, or wakes up late.

A job's last step (a segmentation's completion, a merged or quantized version, a closed round) can
be attempted by more than one worker: a redelivery after a crash, or a worker paused past every
window that resumes and carries on. The `fences` bucket decides, per job, which attempt's result
stands — the first to claim it — and records when its event was published:

    nothing ──claim (create)──▶ claimed(attempt, event) ──publish, confirm (compare-and-set)──▶ confirmed

A later attempt that finds a fresh claim leaves it to the claimant (whose own message stays
unacknowledged until it confirms, so it comes back if the claimant dies); one that finds a claim
older than `ABANDONED_S` publishes *the claimed event* (same message id) and confirms; one that
finds a confirmation publishes nothing. Every publish re-reads the fence just before, so a worker
that slept between its claim and its publish finds the confirmation someone else made and stays
silent. (Core NATS subscribers see every publish, even one the stream drops as a duplicate:
that is why only one attempt publishes, rather than all of them with one message id.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.contracts.envelope import Envelope
from maskline.shared.bus import Bus
from maskline.shared.kv import BucketStore

BUCKET = "fences"
#: A claim not confirmed after this long belongs to an attempt that died before publishing.
ABANDONED_S = 5.0


def segmentation_fence(tenant: str, job_id: str) -> str:
    """The fence of a segmentation: merge's completion and the gateway's cancel race for it."""
    return f"seg.{tenant}.{job_id}"


def training_fence(tenant: str, job_id: str) -> str:
    """The fence of a training: its worker's trained event and a cancel (its tenant's, or its
    sweep's pruner) race for it. `fenced(fences, "train", ...)` names the same key."""
    return f"train.{tenant}.{job_id}"


def sweep_fence(tenant: str, job_id: str) -> str:
    """The fence of a sweep: its driver's swept event and its tenant's cancel race for it."""
    return f"sweep.{tenant}.{job_id}"


class Claim(msgspec.Struct, kw_only=True):
    attempt: str
    event: msgspec.Raw
    """The final event of the winning attempt, exactly as it is (or was) published."""
    state: Literal["claimed", "confirmed"] = "claimed"
    claimed: float = 0.0


_decoder = msgspec.json.Decoder(Claim)


def new_attempt() -> str:
    """Names one attempt at a job: its outputs go under it, so no attempt overwrites another's."""
    return uuid.uuid4().hex[:12]


class Fences(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext, bus: Bus) -> None:
        super().__init__(js)
        self.js, self._bus = js, bus

    async def _read(self, key: str) -> tuple[Claim, int] | None:
        try:
            entry = await self.kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            return None
        return _decoder.decode(entry.value), int(entry.revision)

    async def decided(self, key: str) -> bool:
        """The job's result is decided (and is published now if its claimant did not get to it)."""
        found = await self._read(key)
        if found is None:
            return False
        await self._settle(key, mine=False)
        return True

    async def finish(self, key: str, attempt: str, event: Envelope[Any], lost: Callable[[], Awaitable[None]]) -> bool:
        """Claim the job for `attempt` with `event`, publish and confirm. Returns False when another
        attempt had claimed it first: `lost()` then removes this attempt's outputs, and the
        winner's event is what gets published (if it was not yet)."""
        claim = Claim(attempt=attempt, event=msgspec.Raw(msgspec.json.encode(event)), claimed=time.time())
        try:
            revision = await self.kv.create(key, msgspec.json.encode(claim))
        except KeyWrongLastSequenceError:
            await lost()
            await self._settle(key, mine=False)
            return False
        await self._settle(key, mine=True, claimed=(claim, int(revision)))
        return True

    async def _settle(self, key: str, *, mine: bool, claimed: tuple[Claim, int] | None = None) -> None:
        """Publish the claimed event unless it is confirmed (or another live attempt's to publish),
        then confirm — re-reading the fence just before publishing (except right after this attempt's
        own claim: no one else publishes a fresh claim, so what was just written is what stands)."""
        for _ in range(10):
            found, claimed = claimed or await self._read(key), None
            if found is None or found[0].state == "confirmed":
                return
            claim, revision = found
            if not mine and time.time() - claim.claimed < ABANDONED_S:
                return  # its claimant is at it; if it dies, its unacknowledged message comes back
            await self._bus.publish(msgspec.json.decode(claim.event, type=Envelope[msgspec.Raw]))
            try:
                confirmed = msgspec.structs.replace(claim, state="confirmed")
                await self.kv.update(key, msgspec.json.encode(confirmed), last=revision)
                return
            except KeyWrongLastSequenceError:
                continue  # someone confirmed meanwhile: re-read, and stop there


Handler = Callable[[Envelope[Any]], Awaitable[list[Envelope[Any]]]]


def fenced(fences: Fences, kind: str, handler: Handler) -> Handler:
    """A job handler whose final event (the last it returns) is published exactly once per job
    through the fence; events before it (none, for the model jobs) go out as they are."""

    async def run(env: Envelope[Any]) -> list[Envelope[Any]]:
        key = f"{kind}.{env.tenant}.{env.job_id}"
        if await fences.decided(key):
            return []
        outputs = await handler(env)
        if not outputs:
            return []

        async def nothing_to_remove() -> None:  # model jobs register idempotently per job
            return None

        await fences.finish(key, new_attempt(), outputs[-1], nothing_to_remove)
        return outputs[:-1]

    return run
