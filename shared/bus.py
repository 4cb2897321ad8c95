"""NATS connection, JetStream streams and de-duplicated publishing of contract envelopes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from maskline.contracts.envelope import Envelope
from maskline.shared.config import RuntimeSettings

#: Streams and the subjects they capture. Limits-based retention, so every consumer (the stage
#: that does the work, audit, the job-state projector) reads every message independently.
STREAMS: dict[str, list[str]] = {
    "SEG": ["seg.v1.>"],
    "MODEL": ["model.v1.>"],
    "DATASET": ["dataset.v1.>"],
    "DLQ": ["dlq.>"],
    "AUDIT": ["audit.v1.>"],
}
DUPLICATE_WINDOW_S = 120.0
MSG_ID = "Nats-Msg-Id"

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext

    async def publish(self, env: Envelope[Any], *, subject: str | None = None) -> None:
        """Publish to JetStream with the envelope id as `Nats-Msg-Id`, so a retry is not a duplicate."""
        await self.js.publish(subject or env.type, encode(env), headers={MSG_ID: env.id})

    async def close(self) -> None:
        """Flush pending acks and publishes, then close. Callers stop consuming first, so nothing
        in flight is lost; `drain()` would wait out idle pull requests for its whole timeout."""
        if self.nc.is_connected:
            await self.nc.flush(timeout=5)
        await self.nc.close()


async def connect(settings: RuntimeSettings, name: str) -> Bus:
    nc = await nats.connect(
        settings.nats_url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
    )
    return Bus(nc=nc, js=nc.jetstream())


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the streams if missing; idempotent, safe from every service at start."""
    for name, subjects in STREAMS.items():
        config = StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
            discard=DiscardPolicy.OLD,
            max_age=30 * 24 * 3600.0 if name != "AUDIT" else 0.0,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)


async def read_stream(
    js: JetStreamContext, stream: str, subject: str, *, start_seq: int | None = None, last_per_subject: bool = False
) -> list[Msg]:
    """Every message of `stream` on `subject` (from `start_seq`, or the last one per subject), read
    once through a short-lived consumer.

    The pending count is taken up front, so the read completes or fails loudly; nats-py's idle
    timeouts (as in `kv.keys()`) were seen returning nothing from a non-empty stream under load.
    """
    if last_per_subject:
        policy: dict[str, Any] = {"deliver_policy": DeliverPolicy.LAST_PER_SUBJECT}
    elif start_seq is not None:
        policy = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start_seq}
    else:
        policy = {"deliver_policy": DeliverPolicy.ALL}
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=30.0, **policy)
    sub = await js.pull_subscribe(subject, stream=stream, config=config)
    found: list[Msg] = []
    try:
        remaining = (await sub.consumer_info()).num_pending or 0
        while remaining > 0:
            msgs = await sub.fetch(min(remaining, 256), timeout=5.0)
            remaining -= len(msgs)
            found.extend(msgs)
    finally:
        await sub.unsubscribe()
    return found
