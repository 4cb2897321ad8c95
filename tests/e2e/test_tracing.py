"""One trace per job, across processes: every service of a stack exports its spans over OTLP/HTTP
(configured by the standard OTEL_* variables) to an in-memory collector in this test; a request
that arrives with a W3C `traceparent` is followed from the gateway through ingest, the TTA
fan-out (augment, one infer span per variant), Triton calls — and Triton's own spans, which it
sends as OTLP JSON — and merge, every span in that trace and each one's parent a span of it (or the
caller's)."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from tests.e2e.receivers import Receiver

KEY = "trace-key"


class Collector:
    """An OTLP/HTTP trace receiver (protobuf), keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.receiver = Receiver(self._on_post)

    def _on_post(self, headers: dict[str, str], body: bytes) -> int:
        # OTLP/HTTP in either encoding: protobuf (the Python SDK) or JSON, ids in hex (Triton)
        if headers.get("Content-Type", "").startswith("application/json"):
            request = json.loads(body)
        else:
            request = MessageToDict(ExportTraceServiceRequest.FromString(body))
            hexed = ("traceId", "spanId", "parentSpanId")
            for span in (s for r in request["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]):
                span.update({k: base64.b64decode(span[k]).hex() for k in hexed if k in span})
        with self.lock:
            for resource in request["resourceSpans"]:
                attributes = resource["resource"]["attributes"]
                service = next(a["value"]["stringValue"] for a in attributes if a["key"] == "service.name")
                for scope in resource["scopeSpans"]:
                    for span in scope["spans"]:
                        self.spans.append(
                            {
                                "service": service,
                                "name": span["name"],
                                "trace": span["traceId"],
                                "span": span["spanId"],
                                "parent": span.get("parentSpanId", ""),
                            }
                        )
        return 200

    def of_trace(self, trace_id: str) -> list[dict[str, str]]:
        with self.lock:
            return [s for s in self.spans if s["trace"] == trace_id]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Collector]]:
    collector = Collector()
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.receiver.url("/v1/traces"),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    stack = Stack(on_free_ports(StackSettings(), str(tmp_path_factory.mktemp("traced")), api_keys=f"{KEY}:traced"), extra_env=env)
    stack.up()
    yield stack, collector
    stack.down()
    collector.receiver.close()


def test_a_tta_job_is_one_trace_from_the_http_request_to_its_completion(traced: tuple[Stack, Collector], samples: Path) -> None:
    stack, collector = traced
    trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"Authorization": f"Bearer {KEY}", "traceparent": f"00-{trace_id}-{caller_span}-01"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=180) as http:
        files = {"image": ("a.png", (samples / "shapes-1.png").read_bytes(), "image/png")}
        job = http.post("/v1/segmentations?wait=120", files=files, data={"tta": "true"}).json()
        assert job["status"] == "completed"
        trail = http.get("/v1/audit", params={"job": job["id"]}).json()["records"]
    variants = sum(r["type"] == "seg.v1.augmented" for r in trail)

    def orphans() -> list[tuple[str, str, str]]:
        spans = collector.of_trace(trace_id)
        ids = {s["span"] for s in spans} | {caller_span}
        return [(s["service"], s["name"], s["parent"]) for s in spans if s["parent"] not in ids]

    def triton_calls(spans: list[dict[str, str]]) -> tuple[set[str], set[str]]:
        """infer's calls to Triton, and the calls Triton's own request spans continue."""
        calls = {s["span"] for s in spans if s["name"] == "triton infer"}
        return calls, {s["parent"] for s in spans if s["service"] == "maskline-triton" and s["name"] == "InferRequest"}

    def complete() -> bool:  # every service exports in batches, a span after it ends: wait for the whole tree
        spans = collector.of_trace(trace_id)
        calls, continued = triton_calls(spans)
        return any(s["service"] == "maskline-merge" for s in spans) and bool(calls) and calls == continued and not orphans()

    wait_until(complete, 30, "the job's spans at the collector")
    assert not orphans()  # every span's parent is a span of the trace, or the caller's
    spans = collector.of_trace(trace_id)
    services = {s["service"] for s in spans}
    assert {"maskline-gateway", "maskline-ingest", "maskline-augment", "maskline-infer", "maskline-merge"} <= services
    roots = [s for s in spans if s["parent"] == caller_span]
    assert roots and all(s["service"] == "maskline-gateway" for s in roots)
    infer_spans = [s for s in spans if s["service"] == "maskline-infer" and s["name"].startswith("infer")]
    assert len(infer_spans) >= max(2, variants)  # the fan-out: a span per variant inferred
    assert any(s["name"] == "triton infer" for s in spans)
    # Triton's own spans (its request, the model, the compute) continue each of infer's calls to it
    calls, continued = triton_calls(spans)
    assert calls == continued
    assert {"InferRequest", "maskline.shapes-unet", "compute"} <= {s["name"] for s in spans if s["service"] == "maskline-triton"}
    # and nothing of this job strayed into another trace
    assert not [s for s in collector.spans if s["trace"] != trace_id and job["id"] in s["name"]]
