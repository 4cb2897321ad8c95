"""Audit's quality fold: finished segmentations into their version's hourly summary (each once,
however often delivered), evaluations into the drift reference, and the per-version series."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from prometheus_client import CollectorRegistry, generate_latest

from maskline.contracts import seg_v1
from maskline.contracts.common_v1 import ModelRef
from maskline.contracts.envelope import Envelope
from maskline.services.audit.projection import Projection
from maskline.services.audit.quality import QualityFold, VersionSeries, outcome_of
from maskline.services.audit.service import Audit, Reader
from maskline.shared.bus import Bus
from maskline.shared.jobs.state import JobState, JobStore
from maskline.shared.operations import quality
from maskline.shared.operations.quality import Outcome, QualityStore
from tests.services.audit.test_holding import KEY, Chain, consumed
from tests.shared.jobs.test_state import T0, lifecycle

SERVED = ModelRef(name="m", version=3, owner="o", alias="stable")
CONFIDENCE = seg_v1.Confidence(mean_probability=0.95, uncertain_fraction=0.15)


def served_lifecycle(job: str) -> list[Envelope[object]]:
    """`lifecycle` of a job served by o/m v3 through its `stable` alias, with its confidence."""
    events = lifecycle(job)
    inferred, completed = events[2], events[3]
    events[2] = msgspec.structs.replace(inferred, data=msgspec.structs.replace(inferred.data, model=SERVED, brightness=0.4))
    events[3] = msgspec.structs.replace(
        completed, data=msgspec.structs.replace(completed.data, model=SERVED, confidence=CONFIDENCE, brightness=0.4)
    )
    return events


@pytest.mark.unit
def test_a_failure_before_a_version_was_chosen_is_held_against_none() -> None:
    failed = Envelope(
        id="j:f", type=seg_v1.FAILED, time=T0, source="t", tenant="t1", job_id="j", trace_id="tr",
        data=seg_v1.SegmentationFailed(stage="ingest", code="invalid_image", reason="?", subject="s"),
    )  # fmt: skip
    state = JobState(job_id="j", tenant="t1", status="failed", created=T0, updated=T0, trace_id="tr")
    assert outcome_of(failed, state) is None
    later = outcome_of(failed, msgspec.structs.replace(state, model=SERVED))
    assert later is not None and later.failed_code == "invalid_image" and (later.owner, later.version) == ("o", 3)


@pytest.mark.nats
async def test_a_finished_job_is_counted_once_however_often_it_is_delivered(bus: Bus) -> None:
    store = await QualityStore.opened(bus.js)
    series = VersionSeries(10)
    audit = Audit(
        SimpleNamespace(), Chain(bus.js, KEY), Projection(await JobStore.opened(bus.js)), QualityFold(store, series, 24)
    )  # type: ignore[arg-type]
    job = uuid.uuid4().hex
    _, msgs = await consumed(bus, job, 4, served_lifecycle(job))
    before = {s: h.jobs for s, h in await store.hours("t1", "o", "m", 3, quality.hours_back(T0, 1))}
    reader = Reader("SEG")
    await audit.record(reader, msgs)
    await audit.record(reader, msgs[-1:])  # its ack lost: delivered again
    hours = await store.hours("t1", "o", "m", 3, quality.hours_back(T0, 1))
    assert len(hours) == 1
    start, hour = hours[0]
    assert hour.jobs == before.get(start, 0) + 1  # the same tests' earlier runs share the bucket's hour
    assert hour.aliases["stable"] >= 1 and hour.out_of_domain >= 1
    metrics = series.series[(quality.series_label("o", "m"), "3", "stable")]
    assert (metrics.jobs, metrics.out_of_domain) == (1, 1) and metrics.latency_sum_s == pytest.approx(3.0)


@pytest.mark.unit
def test_the_series_are_bounded_and_labelled_by_version_never_by_tenant() -> None:
    series = VersionSeries(max_series=2)
    at = datetime.now(UTC)
    for version, tenant in ((1, "t1"), (2, "t2"), (3, "t3")):
        series.add(
            Outcome(
                tenant=tenant, owner="o", model="m", version=version, at=at, latency_ms=80.0, values={"uncertain_fraction": 0.01}
            )
        )
    registry = CollectorRegistry()
    registry.register(series)
    text = generate_latest(registry).decode()
    label = quality.series_label("o", "m")
    assert f'maskline_model_jobs_total{{alias="",model="{label}",outcome="completed",version="3"}} 1.0' in text
    assert 'version="1"' not in text  # the least recently seen went first
    assert "t2" not in text and "t3" not in text and '"o/m"' not in text
    assert f'maskline_model_job_latency_seconds_bucket{{alias="",le="0.1",model="{label}",version="3"}} 1.0' in text


class BrokenQuality(QualityFold):
    """A quality store that cannot be written (full, or away)."""

    async def fold(self, finished: list[tuple[Envelope[Any], JobState | None]]) -> None:
        raise RuntimeError("nats: maximum bytes exceeded")


@pytest.mark.nats
async def test_a_quality_fold_that_fails_never_holds_the_trail_up(bus: Bus) -> None:
    store = await QualityStore.opened(bus.js)
    jobs = await JobStore.opened(bus.js)
    audit = Audit(SimpleNamespace(), Chain(bus.js, KEY), Projection(jobs), BrokenQuality(store, VersionSeries(10), 24))  # type: ignore[arg-type]
    job = uuid.uuid4().hex
    psub, msgs = await consumed(bus, job, 4, served_lifecycle(job))
    reader = Reader("SEG")
    await audit.record(reader, msgs)
    assert audit.recorded == 4  # every event acknowledged: recorded, folded into the job's state
    state = await jobs.get("t1", job)
    assert state is not None and state.status == "completed"
    assert {m.metadata.sequence.stream for m in msgs[-1:]} <= set(reader.counted)  # let go uncounted, never retried
    with pytest.raises(NatsTimeoutError):  # nothing comes back: nothing was refused (a refusal returns in a second)
        await psub.fetch(1, timeout=1.5)
