"""Audit: a durable consumer on every stream; each event becomes a signed, hash-chained record,
and every few seconds a signed checkpoint states the chain's head. The same pass folds every
job event into the job-state bucket (projection.py), so each event is read by its consumers and
by audit, and by nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from maskline.contracts import subjects as table
from maskline.services.audit.chain import Chain, Observed, load_signing_key
from maskline.services.audit.projection import Projection
from maskline.services.audit.settings import AuditSettings
from maskline.shared.jobs.state import JobStore
from maskline.shared.service.consumer import BUSY_FETCH_S, IDLE_FETCH_S
from maskline.shared.service.runtime import Runtime

NAME = "audit"
log = structlog.get_logger(NAME)


#: How long a fetched message may take before it is redelivered: short, so job state recovers
#: quickly after an audit crash (what it held is projected again by the restarted one).
ACK_WAIT_S = 3.0
FETCH = 8  # a batch is done well within the ack wait even when the store or bus is slow


#: How long a job's events may wait for its final event before they are recorded without it: well
#: inside the ack wait, so they are recorded and acknowledged before the server sends them again.
HOLD_S = 1.0


@dataclass
class Held:
    """A job's events waiting to be recorded together (their messages are acknowledged after)."""

    since: float
    events: dict[int, Msg] = field(default_factory=dict)
    """By stream sequence: a redelivery of a held event replaces it instead of recording it twice."""


class Audit:
    """Not a `Consumer`: it must record every message, even ones no contract decodes, as is.

    One record per job, not per event (decision 0014): a job's events before its last are folded
    into its state at once (the gateway follows them there) but held for the record, which is
    written when the job's final event arrives, holding all of them, or after `HOLD_S`. Every other
    message is recorded as it comes. The record is written before the final event is folded, so a
    finished job's trail is complete when its state says it finished."""

    def __init__(self, runtime: Runtime, chain: Chain, projection: Projection) -> None:
        self.runtime = runtime
        self.chain = chain
        self.projection = projection
        self.recorded = 0

    async def run_reader(self, reader: table.StreamReader) -> None:
        js = self.runtime.bus.js
        config = ConsumerConfig(
            durable_name=reader.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=reader.filter,
            ack_wait=ACK_WAIT_S,
        )
        psub = await js.pull_subscribe(reader.filter, durable=reader.durable, stream=reader.stream, config=config)
        held: dict[str, Held] = {}
        idle = True
        while not self.runtime.stopping.is_set():
            # As the consumer runtime does: idle, one lingering request for one message; busy, a batch.
            want = 1 if idle else FETCH
            timeout = IDLE_FETCH_S if idle else BUSY_FETCH_S
            if held:
                timeout = max(0.05, min(timeout, min(h.since for h in held.values()) + HOLD_S - time.monotonic()))
            msgs: Sequence[Msg] = []
            try:
                msgs = await psub.fetch(want, timeout=timeout)
            except Exception:
                idle = True
            else:
                idle = len(msgs) < want
            if msgs:
                await self.record(reader, list(msgs), held)
            await self.record_held(reader, held, older_than=time.monotonic() - HOLD_S)
        await self.record_held(reader, held, older_than=float("inf"))

    async def record(self, reader: table.StreamReader, msgs: list[Msg], held: dict[str, Held]) -> None:
        """Record what may not wait (with the job's held events), hold the rest; fold the batch's job
        events (a write per job); then acknowledge what was recorded. A message whose record could
        not be appended is tried again, and so is every message after it."""
        done: list[Msg] = []
        folded: list[Msg] = []
        for index, msg in enumerate(msgs):
            key, final = self.projection.record_key(msg.subject, msg.data)
            if not final:
                held.setdefault(key, Held(since=time.monotonic())).events[msg.metadata.sequence.stream] = msg
                folded.append(msg)
                continue
            waiting = held.pop(key, None)
            group = {**(waiting.events if waiting else {}), msg.metadata.sequence.stream: msg}
            if not await self._append(reader, group):
                for later in msgs[index + 1 :]:
                    await later.nak(delay=1.0)
                break
            done += group.values()
            folded.append(msg)
        try:
            await self.projection.fold([(m.subject, m.data) for m in folded])
        except Exception as exc:  # the state not folded: all of them come again (a record is de-duplicated)
            log.warning("audit.project_failed", error=str(exc))
            for msg in folded:
                held.pop(self.projection.record_key(msg.subject, msg.data)[0], None)
            for msg in {id(m): m for m in (*done, *folded)}.values():
                await msg.nak(delay=1.0)
            return
        await self._acknowledge(done)

    async def record_held(self, reader: table.StreamReader, held: dict[str, Held], older_than: float) -> None:
        """Record the held events of jobs whose final event is late (a long job, or one that failed
        before audit saw its end)."""
        for key in [k for k, h in held.items() if h.since <= older_than]:
            group = held.pop(key).events
            if await self._append(reader, group):
                await self._acknowledge(list(group.values()))

    async def _append(self, reader: table.StreamReader, group: dict[int, Msg]) -> bool:
        ordered = [Observed(m.subject, m.data, seq) for seq, m in sorted(group.items())]
        try:
            await self.chain.append_group(reader.stream, ordered)
        except Exception as exc:
            log.warning("audit.append_failed", subject=ordered[0].subject, events=len(ordered), error=str(exc))
            for msg in group.values():
                await msg.nak(delay=1.0)
            return False
        return True

    async def _acknowledge(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            await msg.ack()
        self.recorded += len(msgs)

    async def checkpoints(self, every_s: float) -> None:
        """A signed statement of the head every `every_s` (when it moved): what outsiders keep."""
        while not self.runtime.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.runtime.stopping.wait(), every_s)
            try:
                await self.chain.checkpoint()
            except Exception as exc:  # the next tick tries again
                log.warning("audit.checkpoint_failed", error=str(exc))


async def setup(runtime: Runtime) -> list[Awaitable[Any]]:
    settings = runtime.settings
    assert isinstance(settings, AuditSettings)
    jobs = await JobStore.opened(runtime.bus.js)
    audit = Audit(runtime, Chain(runtime.bus.js, load_signing_key(settings.audit_signing_key_file)), Projection(jobs))
    readers = [r for r in table.STREAM_READERS if r.service == NAME]
    return [*(audit.run_reader(r) for r in readers), audit.checkpoints(settings.checkpoint_every_s)]
