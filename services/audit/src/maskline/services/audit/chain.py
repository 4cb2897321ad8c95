"""Append signed records to the hash chain in the AUDIT stream, and sign checkpoints of its head.

The chain has one head. Appends publish with `Nats-Expected-Last-Sequence`, so two audit instances
can never fork it: the loser of a race re-reads the head and tries again. Only the audit service
may publish on `audit.v1.>`; if anything else ever lands in the stream (a provisioning identity
misused), the head is found by walking back to the last record signed with our key, the stranger
is dead-lettered, and the trail goes on — verification names the stranger as a break.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime

import msgspec
import structlog
from nacl.signing import SigningKey
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from maskline.contracts.audit_v1 import (
    CHECKPOINT_SUBJECT,
    GENESIS,
    AuditRecord,
    Checkpoint,
    ObservedEvent,
    chain_hash,
    checkpoint_message,
    key_id,
    record_message,
    record_subject,
)
from maskline.contracts.common_v1 import DeadLetter
from maskline.contracts.envelope import Envelope, now
from maskline.shared.bus import MSG_ID
from maskline.shared.tenants.trails import record_intact

STREAM = "AUDIT"
_record = msgspec.json.Decoder(AuditRecord)
_peek = msgspec.json.Decoder(Envelope[msgspec.Raw])
log = structlog.get_logger("audit")


def load_signing_key(path: str) -> SigningKey:
    with open(path, "rb") as handle:
        return SigningKey(bytes.fromhex(handle.read().decode().strip()))


class Head(msgspec.Struct, frozen=True):
    stream_seq: int
    """Last stream sequence (of anything) in the AUDIT stream: the next append expects it."""
    seq: int
    """Chain seq of the last signed record."""
    hash: str
    record_stream_seq: int
    """Stream sequence of that record (what a checkpoint names)."""


class Chain:
    def __init__(self, js: JetStreamContext, key: SigningKey) -> None:
        self.js = js
        self.key = key
        self.key_id = key_id(bytes(key.verify_key))
        self.lock = asyncio.Lock()
        self.head: Head | None = None
        self.checkpointed: int = 0

    def _ours(self, record: AuditRecord) -> bool:
        return record.key_id == self.key_id and record_intact(record, self.key.verify_key)

    async def _load_head(self) -> Head:
        """Walk back from the stream's last message to the last record we signed."""
        info = await self.js.stream_info(STREAM)
        last = info.state.last_seq or 0
        seq = last
        while seq >= (info.state.first_seq or 1) and seq > 0:
            try:
                raw = await self.js.get_msg(STREAM, seq)
            except NotFoundError:
                seq -= 1
                continue
            if raw.subject != CHECKPOINT_SUBJECT:
                try:
                    record = _record.decode(raw.data or b"")
                except (msgspec.ValidationError, msgspec.DecodeError):
                    record = None
                if record is not None and self._ours(record):
                    return Head(stream_seq=last, seq=record.seq, hash=record.hash, record_stream_seq=seq)
                await self._dead_letter(raw.subject or "", raw.data or b"", seq)
            seq -= 1
        return Head(stream_seq=last, seq=0, hash=GENESIS, record_stream_seq=0)

    async def _dead_letter(self, subject: str, data: bytes, seq: int) -> None:
        """Something not written by us is in the trail: keep a copy for operators, go on after it."""
        log.error("audit.foreign_message", subject=subject, stream_seq=seq)
        letter = DeadLetter(
            consumer="audit",
            stream=STREAM,
            stream_seq=seq,
            subject=subject,
            deliveries=1,
            code="foreign_audit_message",
            reason=f"AUDIT stream sequence {seq} on {subject} is not a record signed by the audit service",
            data=data,
        )
        await self.js.publish("dlq.audit", msgspec.json.encode(letter), headers={MSG_ID: f"dlq:audit:{STREAM}:{seq}"})

    async def append(self, *, subject: str, data: bytes, stream: str, stream_seq: int) -> AuditRecord:
        """One record of one event."""
        return await self.append_group(stream, [Observed(subject, data, stream_seq)])

    async def append_group(self, stream: str, group: list[Observed]) -> AuditRecord:
        """One record of events that belong on one record subject (one job's), in stream order."""
        # Each event's envelope, hash and JSON once, outside the retries below.
        env = peek(group[0].data)
        first = observed_event(group[0], stream, env)
        tenant = first.subject.rsplit(".", 1)[-1] if env is not None and first.subject.count(".") >= 3 else None
        more = [observed_event(o, stream, peek(o.data)) for o in group[1:]]
        async with self.lock:
            for _ in range(50):
                if self.head is None:
                    self.head = await self._load_head()
                head = self.head
                record = self._record(first, env, tenant, more, head.seq + 1, head.hash, now())
                try:
                    ack = await self.js.publish(
                        record_subject(tenant, env.job_id if env else None),
                        msgspec.json.encode(record),
                        headers={MSG_ID: group_msg_id(stream, group), "Nats-Expected-Last-Sequence": str(head.stream_seq)},
                    )
                except APIError as exc:
                    if exc.err_code == 10071:  # wrong last sequence: another writer moved the head
                        self.head = None
                        continue
                    raise
                if ack.duplicate:
                    self.head = None  # already recorded before a redelivery; head is unchanged by it
                else:
                    self.head = Head(stream_seq=ack.seq, seq=record.seq, hash=record.hash, record_stream_seq=ack.seq)
                return record
        raise RuntimeError("audit chain: could not append after 50 attempts")

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the current head (if it moved since the last checkpoint) and append the statement."""
        async with self.lock:
            if self.head is None:
                self.head = await self._load_head()
            head = self.head
            if head.seq == 0 or head.seq == self.checkpointed:
                return None
            signature = self.key.sign(checkpoint_message(head.seq, head.record_stream_seq, head.hash)).signature
            point = Checkpoint(
                seq=head.seq,
                stream_seq=head.record_stream_seq,
                hash=head.hash,
                time=now(),
                key_id=self.key_id,
                signature=signature.hex(),
            )
            try:
                ack = await self.js.publish(
                    CHECKPOINT_SUBJECT,
                    msgspec.json.encode(point),
                    headers={MSG_ID: f"audit:checkpoint:{head.seq}", "Nats-Expected-Last-Sequence": str(head.stream_seq)},
                )
            except APIError as exc:
                if exc.err_code == 10071:
                    self.head = None
                    return None
                raise
            if not ack.duplicate:
                self.head = msgspec.structs.replace(head, stream_seq=ack.seq)
            self.checkpointed = head.seq
            return point

    def _record(
        self,
        first: ObservedEvent,
        env: Envelope[msgspec.Raw] | None,
        tenant: str | None,
        more: list[ObservedEvent],
        seq: int,
        prev_hash: str,
        recorded: datetime,
    ) -> AuditRecord:
        record = AuditRecord(
            seq=seq,
            subject=first.subject,
            event_id=first.event_id,
            type=first.type,
            job_id=env.job_id if env else None,
            # The subject's tenant is the one the publisher's credential allowed; the envelope's is a claim.
            tenant=tenant or (env.tenant if env else None),
            source=first.source,
            event_time=first.event_time,
            recorded=recorded,
            stream=first.stream,
            stream_seq=first.stream_seq,
            payload_sha256=first.payload_sha256,
            event=first.event,
            prev_hash=prev_hash,
            key_id=self.key_id,
            more=more or msgspec.UNSET,
        )
        hashed = msgspec.structs.replace(record, hash=chain_hash(record))
        return msgspec.structs.replace(hashed, signature=self.key.sign(record_message(hashed.hash)).signature.hex())


@dataclass(frozen=True)
class Observed:
    """A message as audit received it."""

    subject: str
    data: bytes
    stream_seq: int


def as_json(data: bytes) -> msgspec.Raw:
    """The event as it travelled, or what arrived of it when it was not JSON."""
    try:
        return msgspec.Raw(msgspec.json.encode(msgspec.json.decode(data)))
    except msgspec.DecodeError:
        return msgspec.Raw(msgspec.json.encode({"undecodable": data.decode("utf-8", "replace")[:4096]}))


def peek(data: bytes) -> Envelope[msgspec.Raw] | None:
    """The envelope of an event, its data left undecoded; None for what is not one (garbage is
    recorded too: the trail shows what arrived)."""
    try:
        return _peek.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def observed_event(observed: Observed, stream: str, env: Envelope[msgspec.Raw] | None) -> ObservedEvent:
    return ObservedEvent(
        subject=observed.subject,
        event_id=env.id if env else None,
        type=env.type if env else None,
        source=env.source if env else None,
        event_time=env.time if env else None,
        stream=stream,
        stream_seq=observed.stream_seq,
        payload_sha256=hashlib.sha256(observed.data).hexdigest(),
        event=as_json(observed.data),
    )


def group_msg_id(stream: str, group: list[Observed]) -> str:
    """The record's `Nats-Msg-Id`: the same events give the same id (a redelivery recorded once);
    other events give another, even when a regrouped redelivery starts with the same one."""
    if len(group) == 1:
        return f"audit:{stream}:{group[0].stream_seq}"
    seqs = ",".join(str(o.stream_seq) for o in group)
    return f"audit:{stream}:{group[0].stream_seq}+{len(group) - 1}:{hashlib.sha256(seqs.encode()).hexdigest()[:12]}"
