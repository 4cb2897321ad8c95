"""Metrics fed by job events: counters by family and state, errors by code, stage and Triton histograms."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from maskline.contracts import seg_v1
from maskline.contracts.common_v1 import JobFailed, ModelRef, ObjectRef
from maskline.contracts.envelope import Envelope, now
from maskline.services.gateway.telemetry import Metrics

pytestmark = pytest.mark.unit


def env(type_: str, data: object) -> Envelope[object]:
    return Envelope(id=f"j:{type_}", type=type_, time=now(), source="t", tenant="t", job_id="j", trace_id="x", data=data)


def value(metrics: Metrics, line_start: str) -> float:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start}")


def test_events_move_the_counters_and_histograms() -> None:
    m = Metrics()
    ref = ObjectRef(key="k", size=1, sha256="0" * 64, content_type="image/png")
    completed = seg_v1.SegmentationCompleted(
        artifacts={"mask": ref},
        model=ModelRef(name="m", version=1, precision="fp32"),
        width=8,
        height=8,
        regions=1,
        timings_ms={"ingest": 4.0, "infer": 20.0, "triton": 12.0, "merge": 30.0},
    )
    m.observe(env(seg_v1.COMPLETED, completed))
    m.observe(env(seg_v1.FAILED, JobFailed(stage="infer", code="model_not_found", reason="r", subject="s")))
    m.observe(env(seg_v1.INGESTED, None))  # an intermediate stage: not a job state of its own
    assert value(m, 'maskline_jobs_total{family="seg",state="completed"}') == 1
    assert value(m, 'maskline_jobs_total{family="seg",state="failed"}') == 1
    assert value(m, 'maskline_errors_total{code="model_not_found",stage="infer"}') == 1
    assert value(m, "maskline_triton_seconds_count") == 1
    assert value(m, "maskline_triton_seconds_sum") == pytest.approx(0.012)
    assert value(m, 'maskline_stage_seconds_count{stage="merge"}') == 1
    assert value(m, 'maskline_stage_seconds_bucket{le="0.025",stage="infer"}') == 1
