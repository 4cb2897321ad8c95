"""NATS connection (authenticated), the streams of the subject table, and de-duplicated publishing
of contract envelopes on tenant-scoped subjects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError, OutboundBufferLimitError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError

from maskline.contracts import subjects as table
from maskline.contracts.envelope import Envelope
from maskline.shared import tracing
from maskline.shared.config import RuntimeSettings

#: Streams and the subjects they capture. Limits-based retention, so every consumer (the stage
#: that does the work, audit's recorder and job-state projection) reads every message independently.
STREAMS: dict[str, list[str]] = {name: [pattern] for name, pattern in table.STREAMS.items()}
#: Nobody, not even the provisioning identity, may delete or purge single audit records.
APPEND_ONLY = frozenset({"AUDIT"})
DUPLICATE_WINDOW_S = 120.0
#: What a work stream keeps (envelopes only: payloads are in object storage). The unprocessed part
#: is held far below it by admission (the gateway's backlog cap, ingest's at twice it), so what the
#: limit discards is processed history, oldest first, never queued work.
STREAM_MAX_BYTES = 4 * 1024**3
#: Streams that carry few, small events keep less (a person's sign-ins and key changes: audit has
#: recorded them long before the cap discards any).
STREAM_CAPS = {"ACCOUNT": 256 * 1024**2}
MSG_ID = "Nats-Msg-Id"

_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(Envelope[msgspec.Raw])
log = structlog.get_logger("bus")


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def wire_subject(env: Envelope[Any]) -> str:
    """`<type>.<tenant>`: the tenant is a subject token, so NATS permissions can bind it."""
    return f"{env.type}.{env.tenant}"


def tenant_token(subject: str) -> str:
    """The tenant a wire subject carries (its last token)."""
    return subject.rsplit(".", 1)[-1]


#: The bus is down, or a stream has no leader while a cluster elects one (nobody answers a publish,
#: JetStream's API says "temporarily unavailable"): the same request may succeed when retried.
BUS_UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionClosedError,
    NoServersError,
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    OutboundBufferLimitError,
    ServiceUnavailableError,
)


def msg_id(env: Envelope[Any]) -> str:
    """De-duplication id: the work's deterministic id, scoped to the tenant (two tenants may use the same job id)."""
    return f"{env.tenant}:{env.id}"


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext

    async def publish(self, env: Envelope[Any]) -> None:
        """Publish to JetStream with a deterministic `Nats-Msg-Id`, so a retry is not a duplicate;
        the current span (if any) becomes the message's `traceparent`, continued by its consumer.

        An acknowledgement that says "duplicate" is trusted only when the message the stream holds
        under that id is this very event (same subject, same event id): an outside publisher may set
        any `Nats-Msg-Id` on its own subject, and one that took the id of another tenant's next event
        first would otherwise make that event vanish (the job never advancing). Then the event goes
        out again under an id no one could have taken; handlers are idempotent, so a repeat of this
        rare second publish costs nothing more."""
        traceparent = tracing.current_traceparent()
        if traceparent and env.traceparent is None:
            env = msgspec.structs.replace(env, traceparent=traceparent)
        subject, payload, mid = wire_subject(env), encode(env), msg_id(env)
        ack = await self.js.publish(subject, payload, headers={MSG_ID: mid})
        if ack.duplicate and not await self._holds(ack.stream, ack.seq, subject, env.id):
            log.warning("bus.message_id_taken", subject=subject, msg_id=mid, stream=ack.stream, seq=ack.seq)
            await self.js.publish(subject, payload, headers={MSG_ID: f"{mid}:{uuid.uuid4().hex}"})

    async def _holds(self, stream: str, seq: int, subject: str, event_id: str) -> bool:
        """Whether the stream's message `seq` is the event `event_id` on `subject`."""
        try:
            held = await self.js.get_msg(stream, seq)
        except NotFoundError:  # gone (limits): nothing stands in the event's way any more
            return False
        if held.subject != subject or held.data is None:
            return False
        try:
            return _header_decoder.decode(held.data).id == event_id
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False

    async def close(self) -> None:
        """Flush pending acks and publishes, then close. Callers stop consuming first, so nothing
        in flight is lost; `drain()` would wait out idle pull requests for its whole timeout."""
        if self.nc.is_connected:
            await self.nc.flush(timeout=5)
        await self.nc.close()


def inbox_prefix(identity: str) -> str:
    """Replies to an identity's requests arrive under `_INBOX.<identity>.`: it may read no one else's."""
    return f"_INBOX.{identity}"


async def connect(settings: RuntimeSettings, name: str, *, identity: str, reconnect: bool = True) -> Bus:
    """Connect as `identity` (or `settings.nats_identity`) with its nkey seed; the server refuses
    anonymous clients, and permits each identity only its own subjects."""
    identity = settings.identity(identity)
    options: dict[str, Any] = {}
    if seed := settings.nkey_file(identity):
        options["nkeys_seed"] = seed
    nc = await nats.connect(
        servers=settings.nats_servers(),
        name=name,
        max_reconnect_attempts=-1 if reconnect else 0,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        inbox_prefix=inbox_prefix(identity).encode(),
        **options,
    )
    return Bus(nc=nc, js=nc.jetstream())


def stream_config(name: str, replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=STREAMS[name],
        storage=StorageType.FILE,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        discard=DiscardPolicy.OLD,
        max_age=0.0 if name in APPEND_ONLY else 30 * 24 * 3600.0,
        max_bytes=-1 if name in APPEND_ONLY else STREAM_CAPS.get(name, STREAM_MAX_BYTES),
        deny_delete=name in APPEND_ONLY,
        deny_purge=name in APPEND_ONLY,
    )


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
    # A short inactivity threshold instead of a delete: readers may not delete consumers.
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=10.0, **policy)
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
