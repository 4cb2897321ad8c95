"""The audit chain on a real nats-server, and verification against every kind of tampering."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from nacl.signing import SigningKey

from maskline.contracts.audit_v1 import CHECKPOINT_SUBJECT, AuditRecord, Checkpoint, chain_hash, record_subject
from maskline.contracts.envelope import Envelope, now
from maskline.services.audit.chain import Chain, Observed, observed_event
from maskline.shared.bus import Bus, stream_config
from maskline.shared.operations import dlq
from maskline.shared.tenants.trails import Entry, job_trail, verify_entries, verify_stream

pytestmark = pytest.mark.nats
KEY = SigningKey.generate()


def event(job: str, kind: str, tenant: str = "t1") -> bytes:
    return msgspec.json.encode(
        Envelope(id=f"{job}:{kind}", type=kind, time=now(), source="t", tenant=tenant, job_id=job, trace_id="tr", data={"x": 1})
    )


@pytest.fixture
async def fresh_audit(bus: Bus) -> AsyncIterator[Bus]:
    """An empty AUDIT stream: these tests read and tamper with the whole trail."""
    await bus.js.delete_stream("AUDIT")
    await bus.js.add_stream(stream_config("AUDIT"))
    yield bus


async def test_records_chain_across_writers_and_replays_are_not_duplicated(fresh_audit: Bus) -> None:
    js = fresh_audit.js
    job = uuid.uuid4().hex
    first, second = Chain(js, KEY), Chain(js, KEY)  # two audit instances sharing one chain
    a = await first.append(subject="seg.v1.requested.t1", data=event(job, "seg.v1.requested"), stream="SEG", stream_seq=10)
    b = await second.append(subject="seg.v1.ingested.t1", data=event(job, "seg.v1.ingested"), stream="SEG", stream_seq=11)
    c = await first.append(subject="seg.v1.inferred.t1", data=b"\x00garbage", stream="SEG", stream_seq=12)
    assert b.prev_hash == a.hash and c.prev_hash == b.hash
    assert b.seq == a.seq + 1 and c.seq == b.seq + 1
    await first.append(subject="seg.v1.requested.t1", data=event(job, "seg.v1.requested"), stream="SEG", stream_seq=10)
    assert await first.checkpoint() is not None
    trail = await job_trail(js, "t1", job)
    assert [r.type for r in trail] == ["seg.v1.requested", "seg.v1.ingested"]
    assert await job_trail(js, "t2", job) == []  # another tenant's trail of the same job id is empty
    verdict = await verify_stream(js, KEY.verify_key)
    assert verdict.intact, verdict.problems
    assert (verdict.records, verdict.checkpoints, verdict.head_seq) == (3, 1, 3)


async def test_a_forged_record_is_named_and_the_trail_goes_on(fresh_audit: Bus) -> None:
    js = fresh_audit.js
    chain = Chain(js, KEY)
    job = uuid.uuid4().hex
    real = await chain.append(subject="seg.v1.requested.t1", data=event(job, "seg.v1.requested"), stream="SEG", stream_seq=1)
    # An insider with the provisioning identity writes a record that links and hashes correctly,
    # but cannot sign it with the audit key.
    forged = msgspec.structs.replace(real, seq=2, prev_hash=real.hash, tenant="t1", stream_seq=2, signature="")
    forged = msgspec.structs.replace(forged, hash=chain_hash(forged), signature="00" * 64)
    await js.publish(record_subject("t1", job), msgspec.json.encode(forged))
    await js.publish(record_subject("t1", "x"), b"\xff not a record at all")
    after = await Chain(js, KEY).append(
        subject="seg.v1.ingested.t1", data=event(job, "seg.v1.ingested"), stream="SEG", stream_seq=3
    )
    assert after.prev_hash == real.hash  # the chain went on from the last record the audit key signed
    verdict = await verify_stream(js, KEY.verify_key)
    assert not verdict.intact
    assert verdict.first_break is not None and "stream seq 2" in verdict.first_break and "forged" in verdict.first_break
    letters = [x for x in await dlq.letters(js) if x.code == "foreign_audit_message"]
    assert {x.subject for x in letters} >= {record_subject("t1", job), record_subject("t1", "x")}


async def test_nobody_can_purge_or_delete_audit_records(fresh_audit: Bus) -> None:
    js = fresh_audit.js
    await Chain(js, KEY).append(subject="seg.v1.requested.t1", data=event("j", "seg.v1.requested"), stream="SEG", stream_seq=1)
    with pytest.raises(Exception, match="not permitted"):
        await js.purge_stream("AUDIT")  # even the provisioning identity: the stream denies purges
    with pytest.raises(Exception, match=r"not permitted|10118|delete"):
        await js.delete_msg("AUDIT", 1)


# -- verification of tampered trails (no server: the stream's messages as a list) ----------------


def trail(length: int = 5) -> list[Entry]:
    """A signed trail of `length` records with a checkpoint after the third, as the audit service writes it."""
    chain = Chain(js=None, key=KEY)  # type: ignore[arg-type]
    entries: list[Entry] = []
    prev_hash = "0" * 64
    for n in range(length):
        seq = n + 1
        env = msgspec.json.decode(event(f"job{n}", "seg.v1.requested"), type=Envelope[msgspec.Raw])
        observed = Observed("seg.v1.requested.t1", event(f"job{n}", "x"), n)
        record = chain._record(observed_event(observed, "SEG", env), env, "t1", [], seq, prev_hash, now())
        entries.append(Entry(len(entries) + 1, record_subject("t1", f"job{n}"), msgspec.json.encode(record)))
        prev_hash = record.hash
        if seq == 3:
            entries.append(Entry(len(entries) + 1, CHECKPOINT_SUBJECT, msgspec.json.encode(checkpoint(record, len(entries)))))
    return entries


def checkpoint(record: AuditRecord, stream_seq: int) -> Checkpoint:
    from maskline.contracts.audit_v1 import checkpoint_message, key_id

    signature = KEY.sign(checkpoint_message(record.seq, stream_seq, record.hash)).signature.hex()
    ours = key_id(bytes(KEY.verify_key))
    return Checkpoint(seq=record.seq, stream_seq=stream_seq, hash=record.hash, time=now(), key_id=ours, signature=signature)


def record_at(entries: list[Entry], index: int) -> AuditRecord:
    return msgspec.json.decode(entries[index].data, type=AuditRecord)


def replaced(entries: list[Entry], index: int, **changes: Any) -> list[Entry]:
    edited = msgspec.structs.replace(record_at(entries, index), **changes)
    out = list(entries)
    out[index] = Entry(entries[index].stream_seq, entries[index].subject, msgspec.json.encode(edited))
    return out


def renumbered(entries: list[Entry]) -> list[Entry]:
    """As if the stream were deleted and the entries republished in this order (no sequence gaps)."""
    return [Entry(i + 1, e.subject, e.data) for i, e in enumerate(entries)]


@pytest.mark.unit
def test_an_intact_trail_verifies() -> None:
    verdict = verify_entries(trail(), KEY.verify_key)
    assert verdict.intact and verdict.records == 5 and verdict.checkpoints == 1 and verdict.first_break is None


@pytest.mark.unit
def test_an_edited_record_is_detected() -> None:
    verdict = verify_entries(replaced(trail(), 1, tenant="someone-else"), KEY.verify_key)
    assert verdict.first_break == "stream seq 2 (record 2): content does not match its hash (edited)"


@pytest.mark.unit
def test_an_edit_with_a_recomputed_hash_is_detected_as_forged() -> None:
    entries = trail()
    edited = msgspec.structs.replace(record_at(entries, 1), tenant="someone-else")
    entries = replaced(entries, 1, tenant="someone-else", hash=chain_hash(edited))
    verdict = verify_entries(entries, KEY.verify_key)
    assert verdict.first_break == "stream seq 2 (record 2): not signed by the audit key (forged)"


@pytest.mark.unit
def test_a_record_signed_by_another_key_is_forged() -> None:
    other = SigningKey.generate()
    entries = trail()
    forged = record_at(entries, 1)
    entries = replaced(entries, 1, signature=other.sign(b"maskline-audit-record:" + forged.hash.encode()).signature.hex())
    assert "forged" in (verify_entries(entries, KEY.verify_key).first_break or "")


@pytest.mark.unit
def test_a_dropped_record_is_detected_with_or_without_a_sequence_gap() -> None:
    entries = trail()
    gap = verify_entries(entries[:1] + entries[2:], KEY.verify_key)
    assert gap.first_break == "stream sequences 2-2 are missing (deleted)"
    rewritten = verify_entries(renumbered(entries[:1] + entries[2:]), KEY.verify_key)
    assert rewritten.first_break == "stream seq 2 (record 3): expected record 2 here (records dropped or reordered)"


@pytest.mark.unit
def test_reordered_records_are_detected() -> None:
    entries = trail()
    swapped = renumbered([entries[0], entries[2], entries[1], *entries[3:]])
    assert "expected record 2 here" in (verify_entries(swapped, KEY.verify_key).first_break or "")


@pytest.mark.unit
def test_a_purge_is_detected_by_the_stream_and_by_a_kept_checkpoint() -> None:
    entries = trail()
    kept = msgspec.json.decode(entries[3].data, type=Checkpoint)
    purged = verify_entries([], KEY.verify_key, first_seq=len(entries) + 1)
    assert purged.first_break == f"stream sequences 1-{len(entries)} are gone from the AUDIT stream (purged or deleted)"
    # The stream deleted and recreated with the first two records only: the kept checkpoint tells.
    truncated = verify_entries(entries[:2], KEY.verify_key, kept=kept)
    assert truncated.first_break == "the trail ends at record 2; the kept checkpoint names record 3 (truncated or purged)"
    assert verify_entries(entries, KEY.verify_key, kept=kept).intact


@pytest.mark.unit
def test_a_forged_checkpoint_and_a_foreign_message_are_detected() -> None:
    entries = trail()
    point = msgspec.json.decode(entries[3].data, type=Checkpoint)
    fake = msgspec.structs.replace(point, seq=2)
    forged = [*entries[:3], Entry(4, CHECKPOINT_SUBJECT, msgspec.json.encode(fake)), *entries[4:]]
    assert "checkpoint of record 2 is not signed" in (verify_entries(forged, KEY.verify_key).first_break or "")
    stranger = [*entries, Entry(len(entries) + 1, record_subject("t1", "j"), b"garbage")]
    assert verify_entries(stranger, KEY.verify_key).first_break == f"stream seq {len(entries) + 1}: not an audit record"
