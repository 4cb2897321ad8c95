"""Audit records, major version 1: an append-only, hash-chained, signed copy of every event on the bus.

Only the audit service writes the AUDIT stream. Each record links to the one before it
(`prev_hash`), is hashed, and its hash is signed with the audit service's Ed25519 key; every few
seconds a signed checkpoint names the head (chain seq, stream seq, hash). Whoever keeps a
checkpoint can later prove that nothing up to it was edited, dropped, reordered or purged.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import msgspec

RECORD_SUBJECT_PREFIX = "audit.v1.job."
"""Records are published on `audit.v1.job.<tenant>.<job_id>` (`_` for an unknown tenant or job)."""
CHECKPOINT_SUBJECT = "audit.v1.checkpoint"
GENESIS = "0" * 64
HOLD_S = 1.0
"""How long the audit service may hold a job's events (those before its final one) to record them
with it (1.9). A reader that needs a finished job's whole trail waits at most this long for it."""


def record_subject(tenant: str | None, job_id: str | None) -> str:
    return f"{RECORD_SUBJECT_PREFIX}{tenant or '_'}.{job_id or '_'}"


class ObservedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event as the audit service saw it on the bus (a record's own, or one of its `more`)."""

    subject: str
    event_id: str | None
    type: str | None
    source: str | None
    event_time: datetime | None
    stream: str
    stream_seq: int
    payload_sha256: str
    event: msgspec.Raw
    """The event exactly as it travelled (JSON)."""


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One observed event, or since 1.9 several events of one job observed together (`more`).
    `hash` = sha256(prev_hash + this record encoded with hash="" and signature=""); `signature` =
    Ed25519 over `record_message(hash)` (1.3)."""

    seq: int
    """Position in the chain, 1-based, gap-free."""
    subject: str
    event_id: str | None
    type: str | None
    job_id: str | None
    tenant: str | None
    source: str | None
    event_time: datetime | None
    recorded: datetime
    stream: str
    stream_seq: int
    payload_sha256: str
    event: msgspec.Raw
    """The event exactly as it travelled (JSON), for lineage: input, model, version, precision."""
    prev_hash: str
    hash: str = ""
    key_id: str = ""
    """Which audit signing key signed it (first 16 hex digits of the public key's sha256). Added in 1.3."""
    signature: str = ""
    """Hex Ed25519 signature of `record_message(hash)`. Added in 1.3."""
    more: list[ObservedEvent] | msgspec.UnsetType = msgspec.UNSET
    """Later events of the same job that reached the audit service before its record was written, in
    stream order: covered by this record's hash and signature like the first. A job's events before
    its final one are recorded with it, one record per job instead of one per event. Absent (not
    empty) in a record of one event, so records written before 1.9 hash as they did. Added in 1.9."""

    def observed(self) -> list[ObservedEvent]:
        """Every event this record holds, in stream order."""
        first = ObservedEvent(
            subject=self.subject,
            event_id=self.event_id,
            type=self.type,
            source=self.source,
            event_time=self.event_time,
            stream=self.stream,
            stream_seq=self.stream_seq,
            payload_sha256=self.payload_sha256,
            event=self.event,
        )
        return [first, *(self.more or ())]


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A signed statement of the chain's head at one moment. Added in 1.3."""

    seq: int
    """Chain seq of the head record."""
    stream_seq: int
    """AUDIT stream sequence of that record."""
    hash: str
    time: datetime
    key_id: str
    signature: str
    """Hex Ed25519 signature of `checkpoint_message(seq, stream_seq, hash)`."""


def chain_hash(record: AuditRecord) -> str:
    unsigned = msgspec.structs.replace(record, hash="", signature="")
    return hashlib.sha256(record.prev_hash.encode() + msgspec.json.encode(unsigned)).hexdigest()


def record_message(record_hash: str) -> bytes:
    """What the audit key signs for a record (a domain prefix: a record signature is never a checkpoint's)."""
    return f"maskline-audit-record:{record_hash}".encode()


def checkpoint_message(seq: int, stream_seq: int, head_hash: str) -> bytes:
    return f"maskline-audit-checkpoint:{seq}:{stream_seq}:{head_hash}".encode()


def key_id(public_key: bytes) -> str:
    """Short id of a raw 32-byte Ed25519 public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]
