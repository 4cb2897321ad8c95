from __future__ import annotations

import uuid

import msgspec
import pytest

from maskline.contracts.audit_v1 import verify
from maskline.contracts.envelope import Envelope, now
from maskline.services.audit.chain import Chain
from maskline.shared.audit_trail import job_trail
from maskline.shared.bus import Bus

pytestmark = pytest.mark.nats


def event(job: str, kind: str) -> bytes:
    return msgspec.json.encode(
        Envelope(id=f"{job}:{kind}", type=kind, time=now(), source="t", tenant="t1", job_id=job, trace_id="tr", data={"x": 1})
    )


async def test_records_chain_across_writers_and_replays_are_not_duplicated(bus: Bus) -> None:
    job = uuid.uuid4().hex
    first, second = Chain(bus.js), Chain(bus.js)  # two audit instances sharing one chain
    a = await first.append(subject="seg.v1.requested", data=event(job, "seg.v1.requested"), stream="SEG", stream_seq=10**9)
    b = await second.append(subject="seg.v1.ingested", data=event(job, "seg.v1.ingested"), stream="SEG", stream_seq=10**9 + 1)
    c = await first.append(subject="seg.v1.inferred", data=b"\x00garbage", stream="SEG", stream_seq=10**9 + 2)
    assert b.prev_hash == a.hash and c.prev_hash == b.hash
    assert b.seq == a.seq + 1 and c.seq == b.seq + 1
    await first.append(
        subject="seg.v1.requested", data=event(job, "seg.v1.requested"), stream="SEG", stream_seq=10**9
    )  # redelivery
    trail = await job_trail(bus.js, job)
    assert [r.type for r in trail] == ["seg.v1.requested", "seg.v1.ingested"]
    assert verify([a, b, c]) is None


@pytest.mark.unit
def test_verify_names_the_first_altered_or_unlinked_record() -> None:
    from maskline.contracts.audit_v1 import GENESIS, AuditRecord, chain_hash

    def record(seq: int, prev: str, tenant: str = "t") -> AuditRecord:
        r = AuditRecord(
            seq=seq,
            subject="s",
            event_id="e",
            type="t",
            job_id="j",
            tenant=tenant,
            source="x",
            event_time=None,
            recorded=now(),
            stream="SEG",
            stream_seq=seq,
            payload_sha256="0" * 64,
            event=msgspec.Raw(b"{}"),
            prev_hash=prev,
        )
        return msgspec.structs.replace(r, hash=chain_hash(r))

    r1 = record(1, GENESIS)
    r2 = record(2, r1.hash)
    assert verify([r1, r2]) is None
    assert verify([r1, msgspec.structs.replace(r2, tenant="evil")]) == "record 2 was altered (hash mismatch)"
    assert verify([r1, record(2, GENESIS)]) == "record 2 does not link to record 1"
