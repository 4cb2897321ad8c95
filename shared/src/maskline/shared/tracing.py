"""OpenTelemetry tracing: one trace per job, from the HTTP request (or the publisher on the bus)
through every stage to Triton.

The job's `trace_id` (32 hex digits, as W3C trace context wants) is the trace's id. Every envelope
carries `traceparent`, the span that published it (stamped in `Bus.publish`); a consumer continues
it as a child span; infer passes it to Triton. An envelope without one (an outside publisher) still
joins its job's trace: its trace id stands in, under a parent span id derived from the job.

Configured by the standard variables: spans are exported over OTLP/HTTP when
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, or
`OTEL_TRACES_EXPORTER` says `otlp` / `console`; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER` and `OTEL_BSP_*` apply as the SDK reads them. With none set nothing leaves
the process, and the trace ids still travel.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_configured: list[TracerProvider] = []
tracer = trace.get_tracer("maskline")


def _exporter() -> SpanExporter | None:
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        return ConsoleSpanExporter()
    if otlp_traces_url(os.environ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*
    return None


def otlp_traces_url(env: Mapping[str, str]) -> str | None:
    """Where spans go over OTLP/HTTP as the OTEL_* variables say it (the SDK's own defaults), or None
    when they are not exported that way: for a program that is not Python (Triton) and takes a URL."""
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if chosen in ("none", "console"):
        return None
    if url := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return url
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or ("http://localhost:4318" if chosen == "otlp" else None)
    return base.rstrip("/") + "/v1/traces" if base else None


def configure(service: str) -> TracerProvider:
    """The process's tracer provider (once); `maskline-<service>` unless OTEL_SERVICE_NAME says otherwise."""
    if _configured:
        return _configured[0]
    name = os.environ.get("OTEL_SERVICE_NAME") or f"maskline-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured.append(provider)
    return provider


def shutdown() -> None:
    """Send what is buffered (a stopping service)."""
    for provider in _configured:
        provider.shutdown()


def parent_context(traceparent: str | None, trace_id: str, job_id: str) -> Context:
    """The context a consumer's span continues: the publisher's span, or the job's trace."""
    if traceparent:
        extracted = _propagator.extract({"traceparent": traceparent})
        if trace.get_current_span(extracted).get_span_context().is_valid:
            return extracted
    try:
        trace_int = int(trace_id, 16) if len(trace_id) == 32 else 0
    except ValueError:
        trace_int = 0
    if not trace_int:
        return Context()
    span_id = int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") or 1
    parent = SpanContext(trace_int, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent))


def current_traceparent() -> str | None:
    """`traceparent` of the current span (to put on what this span publishes or calls), if any."""
    carrier: dict[str, Any] = {}
    _propagator.inject(carrier)
    value = carrier.get("traceparent")
    return str(value) if value else None


def current_trace_id() -> str | None:
    """The current trace's id as 32 hex digits (a request that came with `traceparent`), if any."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
