"""Audit records a job's events in one record: those before its last are held until it comes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import msgspec
import pytest
from nacl.signing import SigningKey
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from maskline.contracts.audit_v1 import GENESIS, AuditRecord, chain_hash, record_subject
from maskline.services.audit.chain import Chain, Observed
from maskline.services.audit.projection import Projection
from maskline.services.audit.quality import QualityFold, VersionSeries
from maskline.services.audit.service import Audit, Reader
from maskline.shared.bus import Bus
from maskline.shared.jobs.state import JobStore
from maskline.shared.operations.quality import QualityStore
from maskline.shared.tenants.trails import job_trail, observed, record_intact
from tests.services.audit.test_projection import wire
from tests.shared.jobs.test_state import lifecycle

pytestmark = pytest.mark.nats
KEY = SigningKey.generate()
PRE_1_9_HASH = "e1ff36469f58b047fa389903384d56afe9528f48d7b78beaab96812161e7d892"


async def delivered(bus: Bus, job: str, count: int) -> list:  # type: ignore[type-arg]
    """The job's events as audit's consumer gets them: published on the SEG stream, then fetched."""
    return (await consumed(bus, job, count))[1]


async def consumed(bus: Bus, job: str, count: int, events: list | None = None) -> tuple:  # type: ignore[type-arg]
    """(the pull subscription, the job's events fetched from it): a consumer of new messages only,
    made before they are published (other tests' events share the stream). `events`: the job's
    events, when not `lifecycle(job)`."""
    durable = f"hold-{job[:8]}"
    config = ConsumerConfig(
        durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW, filter_subject="seg.v1.*.t1"
    )
    psub = await bus.js.pull_subscribe("seg.v1.*.t1", durable=durable, stream="SEG", config=config)
    for env in (events or lifecycle(job))[:count]:
        subject, data = wire(env)
        await bus.js.publish(subject, data)
    msgs = [m for m in await psub.fetch(count, timeout=2) if msgspec.json.decode(m.data).get("job_id") == job]
    assert len(msgs) == count
    return psub, msgs


async def quality_of(bus: Bus) -> QualityFold:
    return QualityFold(await QualityStore.opened(bus.js), VersionSeries(10), 24)


async def audit_of(bus: Bus, jobs: JobStore) -> Audit:
    return Audit(SimpleNamespace(), Chain(bus.js, KEY), Projection(jobs), await quality_of(bus))  # type: ignore[arg-type]  # no runtime: no reader loop


async def test_a_jobs_events_wait_for_its_last_and_become_one_record(bus: Bus) -> None:
    jobs = await JobStore.opened(bus.js)
    audit, job = await audit_of(bus, jobs), uuid.uuid4().hex
    msgs = await delivered(bus, job, 4)
    reader = Reader("SEG")
    await audit.record(reader, msgs[:3])
    held = reader.held
    assert list(held) == [record_subject("t1", job)] and len(held[record_subject("t1", job)].events) == 3
    assert await job_trail(bus.js, "t1", job) == []  # held, not yet recorded ...
    state = await jobs.get("t1", job)
    assert state is not None and state.status == "inferred"  # ... but folded at once: the gateway follows the job there
    await audit.record(reader, msgs[3:])
    assert held == {}
    trail = await job_trail(bus.js, "t1", job)
    assert len(trail) == 1 and [e.type for e in observed(trail)] == [e.type for e in lifecycle(job)]
    assert [e.stream_seq for e in observed(trail)] == [m.metadata.sequence.stream for m in msgs]
    assert record_intact(trail[0], KEY.verify_key)  # one hash and one signature cover all four


async def test_a_job_whose_last_event_is_late_is_recorded_without_it(bus: Bus) -> None:
    audit, job = await audit_of(bus, await JobStore.opened(bus.js)), uuid.uuid4().hex
    msgs = await delivered(bus, job, 2)
    reader = Reader("SEG")
    await audit.record(reader, msgs)
    await audit.record_held(reader, older_than=0.0)  # held since a moment ago: not yet old enough
    assert len(reader.held) == 1
    await audit.record_held(reader, older_than=float("inf"))
    trail = await job_trail(bus.js, "t1", job)
    assert reader.held == {} and len(trail) == 1 and len(observed(trail)) == 2


async def test_the_same_events_redelivered_are_recorded_once(bus: Bus) -> None:
    chain, job = Chain(bus.js, KEY), uuid.uuid4().hex
    msgs = await delivered(bus, job, 4)
    group = [Observed(m.subject, m.data, m.metadata.sequence.stream) for m in msgs]
    for _ in range(2):  # audit stopped after writing the record, before acknowledging its events
        await chain.append_group("SEG", group)
    await chain.append_group("SEG", group[2:])  # regrouped after a redelivery: the reader counts each event once
    trail = await job_trail(bus.js, "t1", job)
    assert len(trail) == 2 and [e.stream_seq for e in observed(trail)] == [o.stream_seq for o in group]


class Flaky(Chain):
    """The chain, failing its next `failures` appends (the bus answering with an error)."""

    failures = 1

    async def append_group(self, stream: str, group: list[Observed]) -> AuditRecord:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("no responders")
        return await super().append_group(stream, group)


class FlakyProjection(Projection):
    failures = 0

    async def fold(self, messages: list[tuple[str, bytes]]) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("bucket unavailable")
        await super().fold(messages)


async def test_a_failed_record_and_fold_refuse_each_event_once_and_it_is_recorded_on_redelivery(bus: Bus) -> None:
    jobs = await JobStore.opened(bus.js)
    projection = FlakyProjection(jobs)
    audit, job = Audit(SimpleNamespace(), Flaky(bus.js, KEY), projection, await quality_of(bus)), uuid.uuid4().hex  # type: ignore[arg-type]
    psub, msgs = await consumed(bus, job, 4)
    reader = Reader("SEG")
    await audit.record(reader, msgs[:2])  # held
    projection.failures = 1
    await audit.record(reader, msgs[2:])  # the final's record fails, then the fold: no message settled twice
    assert reader.held == {} and await job_trail(bus.js, "t1", job) == []
    again: list = []  # type: ignore[type-arg]  # refused with a delay of a second: back, maybe in two fetches
    while len(again) < 4:
        again += await psub.fetch(4 - len(again), timeout=5)
    assert sorted(m.metadata.sequence.stream for m in again) == [m.metadata.sequence.stream for m in msgs]
    await audit.record(reader, again)
    await audit.record(reader, again[-1:])  # a redelivery of a recorded event (its ack lost) is not recorded again
    trail = await job_trail(bus.js, "t1", job)
    assert len(trail) == 1 and [e.stream_seq for e in observed(trail)] == [m.metadata.sequence.stream for m in msgs]


def test_a_record_of_one_event_hashes_as_it_did_before_1_9() -> None:
    """The hash of a fixed record, computed by the contract of 1.8 (0627535): `more` is left out."""
    record = AuditRecord(
        seq=7,
        subject="seg.v1.requested.t1",
        event_id="j:seg.v1.requested",
        type="seg.v1.requested",
        job_id="j",
        tenant="t1",
        source="gateway",
        event_time=None,
        recorded=datetime(2026, 1, 1, tzinfo=UTC),
        stream="SEG",
        stream_seq=42,
        payload_sha256="0" * 64,
        event=msgspec.Raw(b'{"a":1}'),
        prev_hash=GENESIS,
        key_id="k",
    )
    assert b"more" not in msgspec.json.encode(record)
    assert chain_hash(record) == PRE_1_9_HASH
