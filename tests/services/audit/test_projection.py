from __future__ import annotations

import uuid

import msgspec
import pytest

from maskline.services.audit.projection import Projection
from maskline.shared.bus import Bus
from maskline.shared.jobs.state import JobStore
from tests.shared.jobs.test_state import lifecycle


def wire(env: msgspec.Struct) -> tuple[str, bytes]:
    return f"{env.type}.{env.tenant}", msgspec.json.encode(env)  # type: ignore[attr-defined]


@pytest.mark.unit
def test_only_a_decodable_event_on_its_own_tenants_subject_is_a_job_event() -> None:
    projection = Projection(jobs=None)  # type: ignore[arg-type]  # decoding reads no store
    requested = lifecycle("j")[0]
    subject, data = wire(requested)
    assert projection.job_event(subject, data) == requested
    assert projection.job_event(subject.replace(".t1", ".t2"), data) is None  # another tenant's subject: forged
    assert projection.job_event(subject, b"{not json") is None
    assert projection.job_event("model.v1.unknown.t1", data) is None  # no job contract on that subject


@pytest.mark.nats
async def test_a_batch_folds_each_jobs_events_into_one_state_and_ignores_the_rest(bus: Bus) -> None:
    jobs = await JobStore.opened(bus.js)
    projection = Projection(jobs)
    one, two, forged = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    subject, data = wire(lifecycle(forged)[0])
    batch = [wire(e) for e in lifecycle(one)] + [wire(lifecycle(two)[0]), (subject.replace(".t1", ".t2"), data), ("x.y.t1", b"?")]
    await projection.fold(batch)
    first, second = await jobs.get("t1", one), await jobs.get("t1", two)
    assert first is not None and first.status == "completed" and first.regions == 2
    assert second is not None and second.status == "requested"
    assert await jobs.get("t1", forged) is None and await jobs.get("t2", forged) is None
