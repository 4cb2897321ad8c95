"""Audit: a durable consumer on every stream; each event becomes a signed, hash-chained record,
and every few seconds a signed checkpoint states the chain's head. The same pass folds every
job event into the job-state bucket (projection.py), so each event is read by its consumers and
by audit, and by nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from maskline.contracts import audit_v1, model_v1, seg_v1
from maskline.contracts import subjects as table
from maskline.contracts.envelope import Envelope
from maskline.services.audit.chain import Chain, Observed, load_signing_key
from maskline.services.audit.projection import Projection
from maskline.services.audit.quality import QualityFold, VersionSeries
from maskline.services.audit.settings import AuditSettings
from maskline.shared.jobs.state import JobState, JobStore
from maskline.shared.operations.quality import QualityStore
from maskline.shared.service.consumer import BUSY_FETCH_S, IDLE_FETCH_S
from maskline.shared.service.runtime import Runtime

NAME = "audit"
log = structlog.get_logger(NAME)


#: How long a fetched message may take before it is redelivered: short, so job state recovers
#: quickly after an audit crash (what it held is projected again by the restarted one).
ACK_WAIT_S = 3.0
FETCH = 8  # a batch is done well within the ack wait even when the store or bus is slow


#: A group grows no larger (a very long job's events): far below the bus's payload limit.
MAX_GROUP = 256
#: Events recorded lately, per reader: a redelivery of one (its ack was lost, or a later step
#: failed) is acknowledged without a second record.
REMEMBERED = 4096
#: The events the quality summaries count (`QualityFold`).
QUALITY_EVENTS = frozenset({seg_v1.COMPLETED, seg_v1.FAILED, model_v1.EVALUATED})


@dataclass
class Held:
    """A job's events waiting to be recorded together (their messages are acknowledged after)."""

    since: float
    """When the first of them was fetched."""
    events: dict[int, Msg] = field(default_factory=dict)
    """By stream sequence: a redelivery of a held event replaces it instead of recording it twice."""


class Reader:
    """What one stream's reader keeps between batches."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.held: dict[str, Held] = {}
        self.recorded: OrderedDict[int, None] = OrderedDict()
        self.counted: OrderedDict[int, None] = OrderedDict()
        """Events lately folded into the quality summaries (counts, unlike job state, add up)."""

    def remember(self, seqs: Iterable[int], into: OrderedDict[int, None] | None = None) -> None:
        memory = self.recorded if into is None else into
        for seq in seqs:
            memory[seq] = None
        while len(memory) > REMEMBERED:
            memory.popitem(last=False)


class Audit:
    """Not a `Consumer`: it must record every message, even ones no contract decodes, as is.

    One record per job, not per event (decision 0014): a job's events before its last are folded
    into its state at once (the gateway follows them there) but held for the record, which is
    written when the job's final event arrives, holding all of them, or after `audit_v1.HOLD_S`.
    Every other message is recorded as it comes. The final event's record is written before it is
    folded, so with one audit instance a finished job's trail is complete when its state says it
    finished; with two, a job's earlier events may be held by the other one and reach the trail up
    to `HOLD_S` later (readers that need them all wait that long: replay)."""

    def __init__(self, runtime: Runtime, chain: Chain, projection: Projection, quality: QualityFold) -> None:
        self.runtime = runtime
        self.chain = chain
        self.projection = projection
        self.quality = quality
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
        state = Reader(reader.stream)
        idle = True
        while not self.runtime.stopping.is_set():
            # As the consumer runtime does: idle, one lingering request for one message; busy, a batch.
            want = 1 if idle else FETCH
            timeout = IDLE_FETCH_S if idle else BUSY_FETCH_S
            if state.held:
                due = min(h.since for h in state.held.values()) + audit_v1.HOLD_S
                timeout = max(0.05, min(timeout, due - time.monotonic()))
            msgs: Sequence[Msg] = []
            try:
                msgs = await psub.fetch(want, timeout=timeout)
            except Exception:
                idle = True
            else:
                idle = len(msgs) < want
            if msgs:
                await self.record(state, list(msgs))
            await self.record_held(state, older_than=time.monotonic() - audit_v1.HOLD_S)
        await self.record_held(state, older_than=float("inf"))

    async def record(self, reader: Reader, msgs: list[Msg]) -> None:
        """Record what may not wait (with the job's held events), hold the rest; fold the batch's job
        events (a write per job); then acknowledge what was recorded. A message whose record could
        not be appended is tried again, and so is every message after it. Each message is
        acknowledged or refused once."""
        fetched = time.monotonic()
        done: list[Msg] = []
        folded: list[tuple[Msg, str, Envelope[Any] | None]] = []  # with its record key and job event
        refused: list[Msg] = []
        for index, msg in enumerate(msgs):
            seq = msg.metadata.sequence.stream
            env = self.projection.job_event(msg.subject, msg.data)  # decoded once, for the key and the fold
            key, final = self.projection.record_key(msg.subject, env)
            if seq in reader.recorded:  # recorded before: fold it again (harmless), acknowledge it
                done.append(msg)
                folded.append((msg, key, env))
                continue
            held = reader.held.get(key)
            if not final and (held is None or len(held.events) < MAX_GROUP):
                reader.held.setdefault(key, Held(since=fetched)).events[seq] = msg
                folded.append((msg, key, env))
                continue
            waiting = reader.held.pop(key, None)
            group = {**(waiting.events if waiting else {}), seq: msg}
            if not await self._append(reader, group):
                refused += [*group.values(), *msgs[index + 1 :]]
                break
            done += group.values()
            folded.append((msg, key, env))
        try:
            states = await self.projection.fold_events([env for _, _, env in folded if env is not None])
        except Exception as exc:  # the state not folded: all of them come again (recorded ones are not recorded twice)
            log.warning("audit.project_failed", error=str(exc))
            for _, key, _ in folded:
                waiting = reader.held.pop(key, None)
                refused += waiting.events.values() if waiting else ()
            refused += [*done, *(msg for msg, _, _ in folded)]
            done = []
        else:
            await self._count(reader, folded, states)
        await self._settle(done, refused)

    async def _count(
        self, reader: Reader, folded: list[tuple[Msg, str, Envelope[Any] | None]], states: dict[tuple[str, str], JobState]
    ) -> None:
        """Fold the batch's finished jobs (and evaluations) into the quality summaries, each event
        once per reader. A fold that fails (the bucket full or away) leaves the batch uncounted, and
        logged: monitoring figures never hold the audit trail up, nor count an event twice."""
        fresh = [
            (msg, env)
            for msg, _, env in folded
            if env is not None and env.type in QUALITY_EVENTS and msg.metadata.sequence.stream not in reader.counted
        ]
        if not fresh:
            return
        try:
            await self.quality.fold([(env, states.get((env.tenant, env.job_id))) for _, env in fresh])
        except Exception as exc:
            log.error("audit.quality_skipped", events=len(fresh), error=str(exc))
        reader.remember((msg.metadata.sequence.stream for msg, _ in fresh), into=reader.counted)

    async def record_held(self, reader: Reader, older_than: float) -> None:
        """Record the held events of jobs whose final event is late (a long job, or one that failed
        before audit saw its end)."""
        for key in [k for k, h in reader.held.items() if h.since <= older_than]:
            group = reader.held.pop(key).events
            if await self._append(reader, group):
                await self._settle(list(group.values()), [])
            else:
                await self._settle([], list(group.values()))

    async def _append(self, reader: Reader, group: dict[int, Msg]) -> bool:
        ordered = [Observed(m.subject, m.data, seq) for seq, m in sorted(group.items())]
        try:
            await self.chain.append_group(reader.stream, ordered)
        except Exception as exc:
            log.warning("audit.append_failed", subject=ordered[0].subject, events=len(ordered), error=str(exc))
            return False
        reader.remember(group)
        return True

    async def _settle(self, done: list[Msg], refused: list[Msg]) -> None:
        """Acknowledge what was recorded and folded; refuse the rest, to be redelivered in a second.
        Each message once: a message can be in both lists when a later step failed."""
        settled: set[int] = set()
        for msg, ok in [*((m, False) for m in refused), *((m, True) for m in done)]:
            if id(msg) in settled:
                continue
            settled.add(id(msg))
            try:
                await (msg.ack() if ok else msg.nak(delay=1.0))
            except Exception as exc:  # redelivered after the ack wait; a recorded one is not recorded twice
                log.warning("audit.settle_failed", subject=msg.subject, error=str(exc))
                continue
            self.recorded += ok

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
    series = VersionSeries(settings.quality_series)
    runtime.collectors.append(series)
    quality = QualityFold(await QualityStore.opened(runtime.bus.js), series, settings.drift_window_hours)
    audit = Audit(runtime, Chain(runtime.bus.js, load_signing_key(settings.audit_signing_key_file)), Projection(jobs), quality)
    readers = [r for r in table.STREAM_READERS if r.service == NAME]
    return [
        *(audit.run_reader(r) for r in readers),
        audit.checkpoints(settings.checkpoint_every_s),
        quality.run(runtime.stopping, settings.drift_every_s),
    ]
