"""Audit records, major version 1: an append-only, hash-chained copy of every event on the bus."""

from __future__ import annotations

import hashlib
from datetime import datetime

import msgspec

RECORD_SUBJECT_PREFIX = "audit.v1.job."
"""Records are published on `audit.v1.job.<job_id>` (`audit.v1.job._` when no job is known)."""
GENESIS = "0" * 64


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One observed event. `hash` = sha256(prev_hash + this record encoded with hash="")."""

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


def chain_hash(record: AuditRecord) -> str:
    unsigned = msgspec.structs.replace(record, hash="")
    return hashlib.sha256(record.prev_hash.encode() + msgspec.json.encode(unsigned)).hexdigest()


def verify(records: list[AuditRecord]) -> str | None:
    """None when every record's hash and link are intact, else the first problem found."""
    for previous, record in zip([None, *records[:-1]], records, strict=True):
        if previous is not None and record.prev_hash != previous.hash:
            return f"record {record.seq} does not link to record {previous.seq}"
        if chain_hash(record) != record.hash:
            return f"record {record.seq} was altered (hash mismatch)"
    return None
