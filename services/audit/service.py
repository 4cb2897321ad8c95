"""Audit: a durable consumer on every subject; each event becomes a hash-chained record."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from maskline.services.audit.chain import Chain
from maskline.shared.bus import STREAMS
from maskline.shared.runtime import Runtime

NAME = "audit"
AUDITED_STREAMS = [s for s in STREAMS if s != "AUDIT"]


class Audit:
    """Not a `Consumer`: it must record every message, even ones no contract decodes, as is."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.chain = Chain(runtime.bus.js)
        self.recorded = 0

    async def run_stream(self, stream: str) -> None:
        js = self.runtime.bus.js
        subject = STREAMS[stream][0]
        config = ConsumerConfig(
            durable_name=f"audit-{stream.lower()}",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=subject,
            ack_wait=30.0,
        )
        psub = await js.pull_subscribe(subject, durable=config.durable_name, stream=stream, config=config)
        while not self.runtime.stopping.is_set():
            try:
                msgs: Sequence[Msg] = await psub.fetch(64, timeout=1.0)
            except Exception:
                continue
            for msg in msgs:
                try:
                    await self.chain.append(
                        subject=msg.subject, data=msg.data, stream=stream, stream_seq=msg.metadata.sequence.stream
                    )
                    await msg.ack()
                    self.recorded += 1
                except Exception:
                    await msg.nak(delay=1.0)


async def setup(runtime: Runtime) -> list[Awaitable[Any]]:
    audit = Audit(runtime)
    return [audit.run_stream(stream) for stream in AUDITED_STREAMS]
