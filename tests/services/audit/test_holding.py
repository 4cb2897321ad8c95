"""Audit records a job's events in one record: those before its last are held until it comes."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import msgspec
import pytest
from nacl.signing import SigningKey
from nats.js.api import AckPolicy, ConsumerConfig

from maskline.contracts import subjects as table
from maskline.contracts.audit_v1 import record_subject
from maskline.services.audit.chain import Chain, Observed
from maskline.services.audit.projection import Projection
from maskline.services.audit.service import Audit, Held
from maskline.shared.bus import Bus
from maskline.shared.jobs.state import JobStore
from maskline.shared.tenants.trails import job_trail, observed, record_intact
from tests.services.audit.test_projection import wire
from tests.shared.jobs.test_state import lifecycle

pytestmark = pytest.mark.nats
KEY = SigningKey.generate()
SEG = table.StreamReader("audit", "audit-test", "SEG")


async def delivered(bus: Bus, job: str, count: int) -> list:  # type: ignore[type-arg]
    """The job's events as audit's consumer gets them: published on the SEG stream, then fetched."""
    for env in lifecycle(job)[:count]:
        subject, data = wire(env)
        await bus.js.publish(subject, data)
    durable = f"hold-{job[:8]}"
    config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, filter_subject="seg.v1.*.t1")
    psub = await bus.js.pull_subscribe("seg.v1.*.t1", durable=durable, stream="SEG", config=config)
    msgs = [m for m in await psub.fetch(64, timeout=2) if msgspec.json.decode(m.data).get("job_id") == job]
    assert len(msgs) == count
    return msgs


def audit_of(bus: Bus, jobs: JobStore) -> Audit:
    return Audit(SimpleNamespace(), Chain(bus.js, KEY), Projection(jobs))  # type: ignore[arg-type]  # no runtime: no reader loop


async def test_a_jobs_events_wait_for_its_last_and_become_one_record(bus: Bus) -> None:
    jobs = await JobStore.opened(bus.js)
    audit, job = audit_of(bus, jobs), uuid.uuid4().hex
    msgs = await delivered(bus, job, 4)
    held: dict[str, Held] = {}
    await audit.record(SEG, msgs[:3], held)
    assert list(held) == [record_subject("t1", job)] and len(held[record_subject("t1", job)].events) == 3
    assert await job_trail(bus.js, "t1", job) == []  # held, not yet recorded ...
    state = await jobs.get("t1", job)
    assert state is not None and state.status == "inferred"  # ... but folded at once: the gateway follows the job there
    await audit.record(SEG, msgs[3:], held)
    assert held == {}
    trail = await job_trail(bus.js, "t1", job)
    assert len(trail) == 1 and [e.type for e in observed(trail)] == [e.type for e in lifecycle(job)]
    assert [e.stream_seq for e in observed(trail)] == [m.metadata.sequence.stream for m in msgs]
    assert record_intact(trail[0], KEY.verify_key)  # one hash and one signature cover all four


async def test_a_job_whose_last_event_is_late_is_recorded_without_it(bus: Bus) -> None:
    audit, job = audit_of(bus, await JobStore.opened(bus.js)), uuid.uuid4().hex
    msgs = await delivered(bus, job, 2)
    held: dict[str, Held] = {}
    await audit.record(SEG, msgs, held)
    await audit.record_held(SEG, held, older_than=0.0)  # held since before now: not yet old enough
    assert len(held) == 1
    await audit.record_held(SEG, held, older_than=float("inf"))
    trail = await job_trail(bus.js, "t1", job)
    assert held == {} and len(trail) == 1 and len(observed(trail)) == 2


async def test_the_same_events_redelivered_are_recorded_once(bus: Bus) -> None:
    chain, job = Chain(bus.js, KEY), uuid.uuid4().hex
    msgs = await delivered(bus, job, 4)
    group = [Observed(m.subject, m.data, m.metadata.sequence.stream) for m in msgs]
    for _ in range(2):  # audit stopped after writing the record, before acknowledging its events
        await chain.append_group("SEG", group)
    await chain.append_group("SEG", group[2:])  # regrouped after a redelivery: the reader counts each event once
    trail = await job_trail(bus.js, "t1", job)
    assert len(trail) == 2 and [e.stream_seq for e in observed(trail)] == [o.stream_seq for o in group]
