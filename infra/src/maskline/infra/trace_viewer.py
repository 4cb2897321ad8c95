"""A trace viewer for one machine: an OTLP/HTTP receiver that prints each trace as a tree.

    maskline traces [--port 4318]          then, in another terminal:
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 maskline up

Every service (and Triton) sends its spans here; once a trace has been quiet for a moment it is
printed: one line per span, indented under its parent, with the service, the span's name and how
long it took. Both OTLP encodings are read: protobuf (the Python SDK) and JSON (Triton). For a
real deployment use a tracing backend (Jaeger, Tempo: docs/deploy.md); this is for looking at a
job on a laptop, and the test suite's collector.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from maskline.infra.receiver import Receiver

_IDS = ("traceId", "spanId", "parentSpanId")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace: str
    span: str
    parent: str
    start_ns: int
    end_ns: int

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def decode(body: bytes, content_type: str) -> list[Span]:
    """The spans of one OTLP/HTTP export request, in either encoding (ids as hex, as OTLP JSON has them)."""
    if content_type.startswith("application/json"):
        request = json.loads(body)
    else:
        request = MessageToDict(ExportTraceServiceRequest.FromString(body))
        for raw in (s for r in request.get("resourceSpans", []) for ss in r.get("scopeSpans", []) for s in ss.get("spans", [])):
            raw.update({k: base64.b64decode(raw[k]).hex() for k in _IDS if k in raw})
    spans = []
    for resource in request.get("resourceSpans", []):
        attributes = resource.get("resource", {}).get("attributes", [])
        service = next((a["value"]["stringValue"] for a in attributes if a["key"] == "service.name"), "?")
        for scope in resource.get("scopeSpans", []):
            for raw in scope.get("spans", []):
                spans.append(
                    Span(
                        service=service,
                        name=raw["name"],
                        trace=raw["traceId"],
                        span=raw["spanId"],
                        parent=raw.get("parentSpanId", ""),
                        start_ns=int(raw.get("startTimeUnixNano", 0)),
                        end_ns=int(raw.get("endTimeUnixNano", 0)),
                    )
                )
    return spans


class Collector:
    """An OTLP/HTTP trace receiver on loopback, keeping every span it is sent."""

    def __init__(self, port: int = 0, on_spans: Callable[[list[Span]], None] | None = None) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        self.on_spans = on_spans
        self.receiver = Receiver(self._on_post, port)
        self.port = self.receiver.port

    def _on_post(self, headers: dict[str, str], body: bytes) -> int:
        try:
            received = decode(body, headers.get("Content-Type", ""))
        except (ValueError, KeyError):
            return 400
        with self.lock:
            self.spans.extend(received)
        if self.on_spans is not None:
            self.on_spans(received)
        return 200

    @property
    def url(self) -> str:
        return self.receiver.url("/v1/traces")

    def of_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace == trace_id]

    def forget(self, trace_id: str) -> None:
        with self.lock:
            self.spans = [s for s in self.spans if s.trace != trace_id]

    def close(self) -> None:
        self.receiver.close()


def tree(spans: list[Span]) -> list[str]:
    """One line per span, children indented under their parent and in the order they started."""
    ids = {s.span for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent if s.parent in ids else "", []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            lines.append(f"{'  ' * depth}{s.service:<18} {s.name}  {s.ms:.1f} ms")
            walk(s.span, depth + 1)

    walk("", 0)
    return lines


def serve(port: int, quiet_s: float = 2.0, printer: Callable[[str], Any] = print) -> None:
    """Receive spans until interrupted; print each trace once it has been quiet for `quiet_s`, then
    let it go (a span of it arriving later starts it again)."""
    last_seen: dict[str, float] = {}
    lock = threading.Lock()

    def arrived(spans: list[Span]) -> None:
        with lock:
            for s in spans:
                last_seen[s.trace] = time.monotonic()

    collector = Collector(port, on_spans=arrived)
    printer(f"receiving OTLP/HTTP traces at {collector.url} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(0.5)
            with lock:
                quiet = [t for t, seen in last_seen.items() if time.monotonic() - seen > quiet_s]
                for trace_id in quiet:
                    del last_seen[trace_id]
            for trace_id in quiet:
                spans = collector.of_trace(trace_id)
                collector.forget(trace_id)
                if spans:
                    printer(f"\ntrace {trace_id} ({len(spans)} spans)\n" + "\n".join(tree(spans)))
    except KeyboardInterrupt:
        pass
    finally:
        collector.close()
