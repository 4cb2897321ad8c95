"""Metrics fed by job-state writes: counters by family and state, errors by code, stage and Triton histograms."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from maskline.contracts.envelope import now
from maskline.services.gateway.operations.metrics import Metrics
from maskline.shared.jobs.state import JobError, JobState

pytestmark = pytest.mark.unit


def state(status: str, **fields: object) -> JobState:
    return JobState(job_id="j", tenant="t", status=status, created=now(), updated=now(), trace_id="x", **fields)  # type: ignore[arg-type]


def value(metrics: Metrics, line_start: str) -> float:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start}")


def test_state_writes_move_the_counters_and_histograms() -> None:
    m = Metrics()
    m.observe(state("requested"))
    m.observe(state("ingested"))  # an intermediate stage: not counted
    m.observe(state("completed", timings_ms={"ingest": 4.0, "infer": 20.0, "triton": 12.0, "merge": 30.0}))
    m.observe(state("failed", error=JobError(stage="infer", code="model_not_found", reason="r")))
    m.observe(state("completed", kind="quantization", timings_ms={"quantize": 900.0}))
    assert value(m, 'maskline_jobs_total{family="seg",state="requested"}') == 1
    assert value(m, 'maskline_jobs_total{family="seg",state="completed"}') == 1
    assert value(m, 'maskline_jobs_total{family="seg",state="failed"}') == 1
    assert value(m, 'maskline_jobs_total{family="model",state="completed"}') == 1
    assert value(m, 'maskline_errors_total{code="model_not_found",stage="infer"}') == 1
    assert value(m, "maskline_triton_seconds_count") == 1
    assert value(m, "maskline_triton_seconds_sum") == pytest.approx(0.012)
    assert value(m, 'maskline_stage_seconds_count{stage="merge"}') == 1
    assert value(m, 'maskline_stage_seconds_bucket{le="0.025",stage="infer"}') == 1
