"""A lossless mapping between maskline's envelope and a CloudEvents 1.0 event in structured JSON mode.

The bus keeps the 1.x envelope (decision record 0008 says why); a system that speaks CloudEvents
converts at its edge with these two functions, and what it gets is a valid CloudEvent: `id`,
`source` (a URI reference), reverse-DNS `type`, `time`, `datacontenttype`, `dataschema`, and the
envelope's other fields as lowercase alphanumeric extensions (`tenant`, `jobid`, `traceparent`,
`maskline` version, `deadline`).
"""

from __future__ import annotations

from typing import Any

SPEC_VERSION = "1.0"
TYPE_PREFIX = "dev.maskline."
SOURCE_PREFIX = "/maskline/"
SCHEMA_BASE = "https://maskline.dev/schemas/"


def _traceparent(trace_id: str) -> str:
    """W3C trace context for a 32-hex trace id (the span id is not carried on the bus: zeros would be
    invalid, so the trace id's first 16 hex digits stand in for the parent)."""
    return f"00-{trace_id}-{trace_id[:16]}-01"


def to_cloudevent(envelope: dict[str, Any]) -> dict[str, Any]:
    """A decoded envelope (JSON object) → the same event as a structured-mode CloudEvent."""
    event: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": envelope["id"],
        "source": SOURCE_PREFIX + envelope["source"],
        "type": TYPE_PREFIX + envelope["type"],
        "time": envelope["time"],
        "datacontenttype": "application/json",
        "dataschema": f"{SCHEMA_BASE}{envelope['type']}.json",
        "tenant": envelope["tenant"],
        "jobid": envelope["job_id"],
        "traceid": envelope["trace_id"],
        "maskline": envelope.get("version", ""),
        "data": envelope["data"],
    }
    if envelope.get("traceparent"):
        event["traceparent"] = envelope["traceparent"]
    elif len(envelope["trace_id"]) == 32:
        event["traceparent"] = _traceparent(envelope["trace_id"])
    if envelope.get("deadline"):
        event["deadline"] = envelope["deadline"]
    return event


def from_cloudevent(event: dict[str, Any]) -> dict[str, Any]:
    """A structured-mode CloudEvent made by `to_cloudevent` (or by hand, the same way) → the envelope."""
    if event.get("specversion") != SPEC_VERSION:
        raise ValueError(f"not a CloudEvents {SPEC_VERSION} event: specversion {event.get('specversion')!r}")
    type_, source = str(event["type"]), str(event["source"])
    if not type_.startswith(TYPE_PREFIX) or not source.startswith(SOURCE_PREFIX):
        raise ValueError(f"not a maskline event: type {type_!r}, source {source!r}")
    envelope: dict[str, Any] = {
        "id": event["id"],
        "type": type_.removeprefix(TYPE_PREFIX),
        "time": event["time"],
        "source": source.removeprefix(SOURCE_PREFIX),
        "tenant": event["tenant"],
        "job_id": event["jobid"],
        "trace_id": event["traceid"],
        "data": event["data"],
    }
    if event.get("maskline"):
        envelope["version"] = event["maskline"]
    traceparent = event.get("traceparent")
    if traceparent and traceparent != _traceparent(str(event["traceid"])):  # not the stand-in made from the trace id
        envelope["traceparent"] = traceparent
    if event.get("deadline"):
        envelope["deadline"] = event["deadline"]
    return envelope
