"""Audit: a durable consumer on every stream; each event becomes a signed, hash-chained record,
and every few seconds a signed checkpoint states the chain's head. The same pass folds every
job event into the job-state bucket (projection.py), so each event is read by its consumers and
by audit, and by nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from maskline.contracts import subjects as table
from maskline.services.audit.chain import Chain, load_signing_key
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


class Audit:
    """Not a `Consumer`: it must record every message, even ones no contract decodes, as is."""

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
        idle = True
        while not self.runtime.stopping.is_set():
            # As the consumer runtime does: idle, one lingering request for one message; busy, a batch.
            want = 1 if idle else FETCH
            try:
                msgs: Sequence[Msg] = await psub.fetch(want, timeout=IDLE_FETCH_S if idle else BUSY_FETCH_S)
            except Exception:
                idle = True
                continue
            idle = len(msgs) < want
            await self.record(reader, list(msgs))

    async def record(self, reader: table.StreamReader, msgs: list[Msg]) -> None:
        """Chain a record of every message, in order; fold the batch's job events (a write per job);
        then acknowledge. A message whose record could not be appended is tried again, and so is
        every message after it (the chain keeps the stream's order)."""
        recorded: list[Msg] = []
        for msg in msgs:
            try:
                await self.chain.append(
                    subject=msg.subject, data=msg.data, stream=reader.stream, stream_seq=msg.metadata.sequence.stream
                )
            except Exception as exc:
                log.warning("audit.append_failed", subject=msg.subject, error=str(exc))
                for later in msgs[len(recorded) :]:
                    await later.nak(delay=1.0)
                break
            recorded.append(msg)
        try:
            await self.projection.fold([(m.subject, m.data) for m in recorded])
        except Exception as exc:  # recorded, but the state not folded: both come again (the record is de-duplicated)
            log.warning("audit.project_failed", error=str(exc))
            for msg in recorded:
                await msg.nak(delay=1.0)
            return
        for msg in recorded:
            await msg.ack()
        self.recorded += len(recorded)

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
