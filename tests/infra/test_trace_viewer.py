"""`maskline traces`: OTLP/HTTP spans in both encodings (protobuf from the Python SDK, JSON from
Triton) are received over real HTTP and printed as one tree per trace."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from maskline.infra.embedded.process import free_port
from maskline.infra.trace_viewer import Collector, tree

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT, CHILD = "b7ad6b7169203331", "00f067aa0ba902b7"


def protobuf_export() -> bytes:
    """The gateway's root span and infer's child, as the Python SDK sends them."""

    def span(span_id: str, parent: str, name: str, start_ms: int, end_ms: int) -> ProtoSpan:
        return ProtoSpan(
            trace_id=bytes.fromhex(TRACE),
            span_id=bytes.fromhex(span_id),
            parent_span_id=bytes.fromhex(parent) if parent else b"",
            name=name,
            start_time_unix_nano=start_ms * 1_000_000,
            end_time_unix_nano=end_ms * 1_000_000,
        )

    def service(name: str, *spans: ProtoSpan) -> ResourceSpans:
        resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=name))])
        return ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=list(spans))])

    request = ExportTraceServiceRequest(
        resource_spans=[
            service("maskline-gateway", span(ROOT, "", "POST /v1/segmentations", 0, 40)),
            service("maskline-infer", span(CHILD, ROOT, "triton infer", 10, 30)),
        ]
    )
    return request.SerializeToString()


def json_export() -> bytes:
    """Triton's request span under infer's call, as Triton sends it (OTLP JSON, hex ids)."""
    span = {
        "traceId": TRACE,
        "spanId": "1268e6207d2bb960",
        "parentSpanId": CHILD,
        "name": "InferRequest",
        "startTimeUnixNano": "12000000",
        "endTimeUnixNano": "29000000",
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "maskline-triton"}}]}
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}).encode()


def post_both(url: str) -> None:
    assert httpx.post(url, content=protobuf_export(), headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    assert httpx.post(url, content=json_export(), headers={"Content-Type": "application/json"}).status_code == 200


@pytest.mark.unit
def test_both_encodings_make_one_tree() -> None:
    collector = Collector()
    try:
        post_both(collector.url)
        spans = collector.of_trace(TRACE)
        assert tree(spans) == [
            "maskline-gateway   POST /v1/segmentations  40.0 ms",
            "  maskline-infer     triton infer  20.0 ms",
            "    maskline-triton    InferRequest  17.0 ms",
        ]
        assert httpx.post(collector.url, content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    finally:
        collector.close()


@pytest.mark.integration
def test_the_cli_prints_a_trace_once_it_is_quiet() -> None:
    port = free_port()
    command = [sys.executable, "-m", "maskline.cli", "traces", "--port", str(port), "--quiet-s", "0.3"]
    viewer = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/v1/traces"
        deadline = time.monotonic() + 20
        while True:  # until it listens
            try:
                post_both(url)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        time.sleep(1.5)
    finally:
        viewer.send_signal(signal.SIGINT)
        out, _ = viewer.communicate(timeout=20)
    assert f"trace {TRACE} (3 spans)" in out
    assert "    maskline-triton    InferRequest  17.0 ms" in out
