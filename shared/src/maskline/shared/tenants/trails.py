"""Read the audit trail back from the AUDIT stream, and verify it: the whole of it, or one job's records.

Verification walks every message of the stream from its first sequence to its head and names
the first break: a sequence missing from the stream (deleted, purged), a message that is not a
record or checkpoint signed by the audit key (forged, even with a recomputed hash), a record whose
hash does not match its content (edited), a chain seq out of order (dropped, reordered), a
`prev_hash` that does not link, a checkpoint that does not match the record it names — and,
given a checkpoint someone kept, a trail that no longer contains what that checkpoint signed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from maskline.contracts import subjects as table
from maskline.contracts.audit_v1 import (
    CHECKPOINT_SUBJECT,
    GENESIS,
    HOLD_S,
    AuditRecord,
    Checkpoint,
    ObservedEvent,
    chain_hash,
    checkpoint_message,
    key_id,
    record_message,
    record_subject,
)
from maskline.contracts.envelope import Envelope
from maskline.shared.bus import read_stream

STREAM = "AUDIT"
_record = msgspec.json.Decoder(AuditRecord)
_checkpoint = msgspec.json.Decoder(Checkpoint)


def load_public_key(path: str) -> VerifyKey:
    with open(path, "rb") as handle:
        return VerifyKey(bytes.fromhex(handle.read().decode().strip()))


def signed_by(key: VerifyKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(message, bytes.fromhex(signature))
    except (BadSignatureError, ValueError):
        return False
    return True


def record_intact(record: AuditRecord, key: VerifyKey) -> bool:
    """The record's own content: its hash matches, and the audit key signed that hash."""
    return chain_hash(record) == record.hash and signed_by(key, record_message(record.hash), record.signature)


@dataclass(frozen=True)
class Entry:
    """One message of the AUDIT stream as stored."""

    stream_seq: int
    subject: str
    data: bytes


@dataclass
class Verdict:
    intact: bool
    records: int = 0
    events: int = 0
    """Events the records hold, each counted once (a record holds one job's events observed together)."""
    checkpoints: int = 0
    head: Checkpoint | None = None
    """The last checkpoint in the trail (keep it: it lets you check this trail later)."""
    head_seq: int = 0
    head_hash: str = GENESIS
    first_break: str | None = None
    problems: list[str] = field(default_factory=list)


def verify_entries(entries: list[Entry], key: VerifyKey, kept: Checkpoint | None = None, first_seq: int = 1) -> Verdict:
    """Check every entry in stream order; `first_seq` is the stream's first sequence (1 unless purged)."""
    verdict = Verdict(intact=True)

    def fail(problem: str) -> None:
        verdict.problems.append(problem)
        if verdict.first_break is None:
            verdict.first_break = problem
            verdict.intact = False

    ours = key_id(bytes(key))
    by_stream: dict[int, AuditRecord] = {}
    by_seq: dict[int, AuditRecord] = {}
    expected_stream = 1
    if first_seq > 1:
        fail(f"stream sequences 1-{first_seq - 1} are gone from the AUDIT stream (purged or deleted)")
        expected_stream = first_seq
    previous: AuditRecord | None = None
    seen: set[tuple[str, int]] = set()
    for entry in entries:
        if entry.stream_seq != expected_stream:
            fail(f"stream sequences {expected_stream}-{entry.stream_seq - 1} are missing (deleted)")
        expected_stream = entry.stream_seq + 1
        where = f"stream seq {entry.stream_seq}"
        if entry.subject == CHECKPOINT_SUBJECT:
            try:
                point = _checkpoint.decode(entry.data)
            except (msgspec.ValidationError, msgspec.DecodeError):
                fail(f"{where}: not a checkpoint")
                continue
            message = checkpoint_message(point.seq, point.stream_seq, point.hash)
            named = by_stream.get(point.stream_seq)
            if point.key_id != ours or not signed_by(key, message, point.signature):
                fail(f"{where}: checkpoint of record {point.seq} is not signed by the audit key (forged)")
            elif named is None or named.seq != point.seq or named.hash != point.hash:
                fail(
                    f"{where}: checkpoint names record {point.seq} with hash {point.hash[:12]}..., which the trail does not hold"
                )
            verdict.checkpoints += 1
            verdict.head = point
            continue
        try:
            record = _record.decode(entry.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            fail(f"{where}: not an audit record")
            continue
        label = f"{where} (record {record.seq})"
        if chain_hash(record) != record.hash:
            fail(f"{label}: content does not match its hash (edited)")
        elif record.key_id != ours or not signed_by(key, record_message(record.hash), record.signature):
            fail(f"{label}: not signed by the audit key (forged)")
        expected_seq = 1 if previous is None else previous.seq + 1
        if record.seq != expected_seq:
            fail(f"{label}: expected record {expected_seq} here (records dropped or reordered)")
        expected_prev = GENESIS if previous is None else previous.hash
        if record.prev_hash != expected_prev:
            fail(f"{label}: does not link to the record before it (prev_hash)")
        if entry.subject != record_subject(record.tenant, record.job_id):
            fail(f"{label}: stored on {entry.subject}, but it is a record of {record.tenant}/{record.job_id}")
        by_stream[entry.stream_seq] = record
        by_seq[record.seq] = record
        previous = record
        verdict.records += 1
        seen.update((e.stream, e.stream_seq) for e in record.observed())
        verdict.events = len(seen)
    if previous is not None:
        verdict.head_seq, verdict.head_hash = previous.seq, previous.hash
    if kept is not None:
        if not signed_by(key, checkpoint_message(kept.seq, kept.stream_seq, kept.hash), kept.signature):
            fail("the kept checkpoint is not signed by the audit key")
        elif (held := by_seq.get(kept.seq)) is None:
            fail(
                f"the trail ends at record {verdict.head_seq}; the kept checkpoint names record {kept.seq} (truncated or purged)"
            )
        elif held.hash != kept.hash:
            fail(f"record {kept.seq} differs from the kept checkpoint (the trail was rewritten)")
    return verdict


async def read_entries(js: JetStreamContext) -> tuple[list[Entry], int]:
    """Every message of the AUDIT stream and the stream's first sequence."""
    info = await js.stream_info(STREAM)
    msgs: list[Msg] = await read_stream(js, STREAM, "audit.v1.>") if info.state.messages else []
    entries = [Entry(m.metadata.sequence.stream, m.subject, m.data) for m in msgs]
    return sorted(entries, key=lambda e: e.stream_seq), int(info.state.first_seq or 1)


async def verify_stream(js: JetStreamContext, key: VerifyKey, kept: Checkpoint | None = None) -> Verdict:
    entries, first_seq = await read_entries(js)
    return verify_entries(entries, key, kept, first_seq)


async def job_trail(js: JetStreamContext, tenant: str, job_id: str, limit: int = 1000) -> list[AuditRecord]:
    """Records of one job of one tenant, oldest first."""
    msgs = await read_stream(js, STREAM, record_subject(tenant, job_id))
    return [_record.decode(m.data) for m in msgs[:limit]]


async def finished_trail(js: JetStreamContext, tenant: str, job_id: str, needed: Iterable[str]) -> list[AuditRecord]:
    """A finished job's records, once they hold an event of each type `needed` (or `HOLD_S` twice
    over has passed): with two audit instances, a job's earlier events may reach the trail up to
    `HOLD_S` after its final one (decision 0014)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * HOLD_S
    while True:
        trail = await job_trail(js, tenant, job_id)
        if set(needed) <= {e.type for e in observed(trail)} or loop.time() > deadline:
            return trail
        await asyncio.sleep(0.1)


def observed(trail: list[AuditRecord]) -> list[ObservedEvent]:
    """Every event a trail's records hold, once each, in the order recorded. An event appears in two
    records only when audit stopped between writing a record and acknowledging its events, and the
    redelivered events were grouped otherwise (an audit crash between the two, or two instances
    holding a job's events while the server redelivered them)."""
    seen: dict[tuple[str, int], ObservedEvent] = {}
    for record in trail:
        for event in record.observed():
            seen.setdefault((event.stream, event.stream_seq), event)
    return list(seen.values())


def events(trail: list[AuditRecord], types: Iterable[str]) -> list[Envelope[Any]]:
    """The events of these types in a trail, decoded with the subject table's payload, in order."""
    wanted = {t: table.subject(t).payload for t in types}
    return [
        msgspec.json.decode(e.event, type=Envelope[wanted[e.type]])  # type: ignore[valid-type,name-defined]
        for e in observed(trail)
        if e.type in wanted
    ]
