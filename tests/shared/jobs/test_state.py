from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from maskline.contracts import seg_v1
from maskline.contracts.common_v1 import JobFailed, ModelRef, ObjectRef
from maskline.contracts.envelope import Envelope
from maskline.shared.bus import Bus
from maskline.shared.jobs.state import JobStore, _fold
from maskline.shared.kv import Revisions

REF = ObjectRef(key="k", size=1, sha256="0" * 64)
OPTS = seg_v1.SegmentationOptions()
MODEL = ModelRef(name="m", version=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(job: str, subject: str, data: object, step: int) -> Envelope[object]:
    return Envelope(
        id=f"{job}:{subject}",
        type=subject,
        time=T0 + timedelta(seconds=step),
        source="t",
        tenant="t1",
        job_id=job,
        trace_id="tr",
        data=data,
    )


def lifecycle(job: str) -> list[Envelope[object]]:
    return [
        event(job, seg_v1.REQUESTED, seg_v1.SegmentationRequested(image=REF), 0),
        event(
            job,
            seg_v1.INGESTED,
            seg_v1.SegmentationIngested(
                image=REF, width=4, height=3, original_format="PNG", options=OPTS, timings_ms={"ingest": 1.0}
            ),
            1,
        ),
        event(
            job,
            seg_v1.INFERRED,
            seg_v1.SegmentationInferred(
                image=REF,
                width=4,
                height=3,
                prediction=REF,
                model=MODEL,
                labels=("a", "b"),
                options=OPTS,
                timings_ms={"ingest": 1.0, "infer": 2.0},
            ),
            2,
        ),
        event(
            job,
            seg_v1.COMPLETED,
            seg_v1.SegmentationCompleted(
                artifacts={"mask": REF},
                model=MODEL,
                width=4,
                height=3,
                regions=2,
                timings_ms={"ingest": 1.0, "infer": 2.0, "merge": 3.0},
            ),
            3,
        ),
    ]


@pytest.mark.unit
def test_folding_events_in_any_order_ends_in_the_same_completed_state() -> None:
    events = lifecycle("j")
    finals = set()
    for order in itertools.permutations(events):
        state = None
        for env in order:
            state = _fold(state, env)
        assert state is not None
        finals.add((state.status, state.width, state.regions, tuple(sorted(state.timings_ms.items())), state.updated))
    assert finals == {("completed", 4, 2, (("infer", 2.0), ("ingest", 1.0), ("merge", 3.0)), T0 + timedelta(seconds=3))}


@pytest.mark.unit
def test_failed_is_terminal_but_never_overrides_completed() -> None:
    failed = event("j", seg_v1.FAILED, JobFailed(stage="infer", code="x", reason="boom", subject="s"), 5)
    state = _fold(_fold(None, lifecycle("j")[0]), failed)
    assert state.status == "failed" and state.error is not None and state.error.reason == "boom"
    state = _fold(_fold(None, lifecycle("j")[3]), failed)
    assert state.status == "completed"


@pytest.mark.nats
async def test_job_store_applies_events_with_compare_and_set(bus: Bus) -> None:
    import asyncio

    store = await JobStore.opened(bus.js)
    job = uuid.uuid4().hex
    await asyncio.gather(*(store.apply(env) for env in lifecycle(job)))
    tenant = lifecycle(job)[0].tenant
    state = await store.get(tenant, job)
    assert state is not None and state.status == "completed" and state.artifacts == {"mask": REF}
    assert await store.get(tenant, "missing-job") is None
    assert await store.get("another-tenant", job) is None  # jobs are keyed by tenant and id


class CountingReads:
    """The real bucket, with its reads counted."""

    def __init__(self, kv: Any) -> None:
        self.kv, self.reads = kv, 0

    async def get(self, key: str) -> Any:
        self.reads += 1
        return await self.kv.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


@pytest.mark.nats
async def test_a_writer_folds_from_what_it_wrote_and_a_stale_memory_costs_only_a_read(bus: Bus) -> None:
    """audit writes a job's events one after another: after the first, each fold starts from the
    state it wrote (no read). Another writer in between (the gateway, a second audit) makes the
    remembered revision stale: the write is refused, the key read, and nothing is lost."""
    audit, gateway = await JobStore.opened(bus.js), await JobStore.opened(bus.js)
    counted = CountingReads(audit.kv)
    audit._bound = counted
    requested, ingested, inferred, completed = lifecycle(uuid.uuid4().hex)

    await audit.apply(requested)
    await audit.apply(ingested)
    assert counted.reads == 1  # the first event only: the key was new

    await gateway.apply(inferred)  # audit's memory of the job is now one revision behind
    state = await audit.apply(completed)
    assert counted.reads == 2  # the refused write, then one read
    assert state.status == "completed" and state.model == MODEL and state.artifacts == {"mask": REF}

    requested, ingested, inferred, _ = lifecycle(uuid.uuid4().hex)
    await audit.apply(requested)
    await audit.apply(ingested)
    await gateway.apply(inferred)
    reads = counted.reads
    again = await audit.apply(ingested)  # a redelivery: changes nothing, and that is read afresh
    assert counted.reads == reads + 1 and again.status == "inferred" and again.model == MODEL


@pytest.mark.unit
def test_the_memory_of_revisions_is_bounded() -> None:
    revisions = Revisions(size=2)
    for i in range(3):
        revisions.put(f"k{i}", b"v", i)
    assert revisions.get("k0") is None and revisions.get("k2") == (b"v", 2)


@pytest.mark.nats
async def test_entries_reads_every_live_key_of_a_bucket(bus: Bus) -> None:
    from nats.js.api import KeyValueConfig

    from maskline.shared.kv import entries

    name = f"t{uuid.uuid4().hex[:8]}"
    kv = await bus.js.create_key_value(KeyValueConfig(bucket=name, history=1))
    assert await entries(bus.js, name) == {}
    for i in range(300):  # more than one fetch batch
        await kv.put(f"k{i}", str(i).encode())
    await kv.put("k5", b"new")
    await kv.delete("k7")
    found = await entries(bus.js, name)
    assert len(found) == 299 and found["k5"] == b"new" and "k7" not in found


@pytest.mark.unit
def test_a_registration_completes_only_the_registration_job_that_asked_for_it() -> None:
    from maskline.contracts import model_v1

    version = model_v1.ModelVersion(name="m", version=3, labels=("a", "b"), input_size=(8, 8), weights=REF, owner="t1")
    registered = model_v1.ModelRegistered(model=version)
    command = model_v1.RegisterRequested(name="m", weights=REF, labels=("a", "b"), input_size=(8, 8))
    state = _fold(
        _fold(None, event("r", model_v1.REGISTER_REQUESTED, command, 0)), event("r", model_v1.REGISTERED, registered, 1)
    )
    assert (state.kind, state.status, state.model) == ("registration", "completed", ModelRef(name="m", version=3, owner="t1"))
    quantize = model_v1.QuantizeRequested(model=model_v1.VersionRef("m", 1), dataset="d")
    state = _fold(
        _fold(None, event("q", model_v1.QUANTIZE_REQUESTED, quantize, 0)), event("q", model_v1.REGISTERED, registered, 1)
    )
    assert (state.kind, state.status) == ("quantization", "requested")  # model.v1.quantized completes it


@pytest.mark.unit
def test_another_command_under_a_jobs_id_changes_nothing_of_it_before_or_after_it_completed() -> None:
    first = lifecycle("j")[0]
    forged = event("j", seg_v1.REQUESTED, seg_v1.SegmentationRequested(image=REF, filename="forged.png"), 9)
    running = _fold(_fold(None, first), forged)
    assert running.filename is None and running.options == OPTS  # the first request's, still
    state = None
    for env in lifecycle("j"):
        state = _fold(state, env)
    assert state is not None
    before = msgspec.json.encode(state)
    for again in (forged, first):  # another request, or the job's own request once more
        state = _fold(state, again)
    assert msgspec.json.encode(state) == before
