"""One trace per job, across processes: every service of a stack exports its spans over OTLP/HTTP
(configured by the standard OTEL_* variables) to the collector of `maskline traces`, in this test; a request
that arrives with a W3C `traceparent` is followed from the gateway through ingest, the TTA
fan-out (augment, one infer span per variant), Triton calls — and Triton's own spans, which it
sends as OTLP JSON — and merge, every span in that trace and each one's parent a span of it (or the
caller's)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.infra.trace_viewer import Collector, Span, tree

pytestmark = pytest.mark.e2e

KEY = "trace-key"


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Collector]]:
    collector = Collector()
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    stack = Stack(on_free_ports(StackSettings(), str(tmp_path_factory.mktemp("traced")), api_keys=f"{KEY}:traced"), extra_env=env)
    stack.up()
    yield stack, collector
    stack.down()
    collector.close()


def test_a_tta_job_is_one_trace_from_the_http_request_to_its_completion(traced: tuple[Stack, Collector], samples: Path) -> None:
    stack, collector = traced
    trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"Authorization": f"Bearer {KEY}", "traceparent": f"00-{trace_id}-{caller_span}-01"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=180) as http:
        files = {"image": ("a.png", (samples / "shapes-1.png").read_bytes(), "image/png")}
        job = http.post("/v1/segmentations?wait=120", files=files, data={"tta": "true"}).json()
        assert job["status"] == "completed"
        trail = http.get("/v1/audit", params={"job": job["id"]}).json()["events"]
    variants = sum(r["type"] == "seg.v1.augmented" for r in trail)

    def orphans() -> list[tuple[str, str, str]]:
        spans = collector.of_trace(trace_id)
        ids = {s.span for s in spans} | {caller_span}
        return [(s.service, s.name, s.parent) for s in spans if s.parent not in ids]

    def triton_calls(spans: list[Span]) -> tuple[set[str], set[str]]:
        """infer's calls to Triton, and the calls Triton's own request spans continue."""
        calls = {s.span for s in spans if s.name == "triton infer"}
        return calls, {s.parent for s in spans if s.service == "maskline-triton" and s.name == "InferRequest"}

    def complete() -> bool:  # every service exports in batches, a span after it ends: wait for the whole tree
        spans = collector.of_trace(trace_id)
        calls, continued = triton_calls(spans)
        return any(s.service == "maskline-merge" for s in spans) and bool(calls) and calls == continued and not orphans()

    wait_until(complete, 30, "the job's spans at the collector")
    assert not orphans()  # every span's parent is a span of the trace, or the caller's
    spans = collector.of_trace(trace_id)
    services = {s.service for s in spans}
    assert {"maskline-gateway", "maskline-ingest", "maskline-augment", "maskline-infer", "maskline-merge"} <= services
    roots = [s for s in spans if s.parent == caller_span]
    assert roots and all(s.service == "maskline-gateway" for s in roots)
    infer_spans = [s for s in spans if s.service == "maskline-infer" and s.name.startswith("infer")]
    assert len(infer_spans) >= max(2, variants)  # the fan-out: a span per variant inferred
    assert any(s.name == "triton infer" for s in spans)
    # Triton's own spans (its request, the model, the compute) continue each of infer's calls to it
    calls, continued = triton_calls(spans)
    assert calls == continued
    assert {"InferRequest", "maskline.shapes-unet", "compute"} <= {s.name for s in spans if s.service == "maskline-triton"}
    # and nothing of this job strayed into another trace
    assert not [s for s in collector.spans if s.trace != trace_id and job["id"] in s.name]
    # what `maskline traces` prints: the gateway's request at the root, Triton's compute deep inside it
    lines = tree(spans)
    assert len(lines) == len(spans) and lines[0].startswith("maskline-gateway")
    assert any(line.startswith("  ") and "maskline-triton" in line and "compute" in line for line in lines)


def test_requests_on_one_keep_alive_connection_stay_in_their_own_traces(traced: tuple[Stack, Collector], samples: Path) -> None:
    """An image upload makes uvicorn pause and resume reading; the request's context used to leak
    into the next request on the connection (CPython #140947), putting their jobs in one trace."""
    stack, collector = traced
    sent = [uuid.uuid4().hex for _ in range(2)]
    body = (samples / "shapes-1.png").read_bytes()
    assert len(body) > 65536  # over uvicorn's read buffer limit: it pauses reading, as for any real photo
    files = {"image": ("a.png", body, "image/png")}
    with httpx.Client(base_url=stack.gateway_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as http:
        for trace_id in (sent[0], None, sent[1]):  # one connection; the middle request brings no trace of its own
            headers = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"} if trace_id else {}
            assert http.post("/v1/segmentations?wait=60", files=files, headers=headers).json()["status"] == "completed"

    def ingested(trace_id: str) -> int:
        return sum(s.service == "maskline-ingest" for s in collector.of_trace(trace_id))

    wait_until(lambda: all(ingested(t) for t in sent), 30, "both traces at the collector")
    time.sleep(1)  # a leaked job's spans would arrive with the others
    assert [ingested(t) for t in sent] == [1, 1]
