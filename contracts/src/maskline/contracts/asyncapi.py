"""The AsyncAPI 3.0 document of the bus, generated from the system table (`subjects.py`).

One channel for every subject anything publishes: each event subject (`<type>.<tenant>`, the tenant
a parameter) and each record subject (dead letters, the audit trail). Its message points at the
published JSON Schema, named as draft-07 by `schemaFormat` (the one JSON Schema dialect AsyncAPI
tools must read; `draft07.py` says why), and carries an example (`examples.py`) that a test
validates against it. One operation per producer (`send`) and per reader (`receive`), named
`<who>.<send|receive>.<message>`: the services' durable consumers, audit's whole-stream readers,
the short-lived readers of the DLQ and AUDIT streams, and the outside systems where the table lets
them publish or read.

A receive operation through a durable consumer gives its name as the NATS binding's `queue`: every
instance of the service pulls from that one JetStream durable, so each message goes to one of them,
as in a queue group. Readers without a durable (listings, an outside system's own consumers) have
no queue: each of them sees every message.

Written to `contracts/asyncapi.json` by `python -m maskline.contracts.schema` and checked for
staleness like the schemas.
"""

from __future__ import annotations

import re
from typing import Any

from maskline.contracts import draft07, examples
from maskline.contracts import subjects as table
from maskline.contracts.envelope import CONTRACT_VERSION

NATS_BINDING = "0.1.0"
"""Version of AsyncAPI's NATS bindings (operation: `queue`; server, channel, message: none)."""

PARAMETERS: dict[str, dict[str, Any]] = {
    "tenant": {
        "description": "the tenant the message belongs to; an identity bound to a tenant uses only its own "
        "(`_` on an audit record of an event that named none)"
    },
    "durable": {"description": "the durable consumer that gave up on the message (`audit`: an event audit could not record)"},
    "job": {"description": "the job of the event recorded (`_` when it named none)"},
}


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)}


def _operation(action: str, name: str, who: str, how: str = "", queue: str | None = None) -> dict[str, Any]:
    verb = "publishes" if action == "send" else "consumes"
    op: dict[str, Any] = {
        "action": action,
        "channel": _ref("channels", name),
        "summary": f"{who} {verb} {name}",
        "messages": [_ref("channels", name, "messages", name)],
        "tags": [{"name": who}],
    }
    if how:
        op["description"] = how
    if queue is not None:
        op["bindings"] = {"nats": {"queue": queue, "bindingVersion": NATS_BINDING}}
    return op


def _message(name: str, title: str, summary: str, msg_id: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {"Nats-Msg-Id": {"type": "string", "description": f"{msg_id}, for de-duplication"}},
        },
        "payload": {"schemaFormat": draft07.SCHEMA_FORMAT, "schema": {"$ref": f"schemas/{name}.json"}},
        "examples": [{"name": "example", "headers": examples.headers(name), "payload": examples.message(name)}],
        "x-maskline": extra,
    }


def _channel(name: str, address: str, description: str) -> dict[str, Any]:
    channel: dict[str, Any] = {"address": address, "title": name, "description": description}
    parameters = re.findall(r"\{(\w+)\}", address)
    if parameters:
        channel["parameters"] = {p: _ref("components", "parameters", p) for p in parameters}
    channel["messages"] = {name: _ref("components", "messages", name)}
    return channel


def _readers(stream: str) -> list[tuple[str, str, str | None]]:
    """(who, how, queue) of every reader of a whole stream."""
    found: list[tuple[str, str, str | None]] = [
        (r.service, f"reads the whole {stream} stream through its durable consumer `{r.durable}`", r.durable)
        for r in table.STREAM_READERS
        if r.stream == stream
    ]
    found += [
        (who, f"reads the {stream} stream through short-lived consumers (listings, trails)", None)
        for who, streams in table.READS.items()
        if stream in streams
    ]
    return found


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}

    def add(action: str, name: str, who: str, how: str = "", queue: str | None = None) -> None:
        key = f"{who}.{action}.{name}"
        if key in operations:
            raise ValueError(f"two {action} operations of {who} on {name}: the subject table lists it twice")
        operations[key] = _operation(action, name, who, how, queue)

    for s in table.SUBJECTS:
        for producer in s.producers:
            add("send", s.type, producer)
        for consumer in s.consumers:
            add("receive", s.type, consumer.service, f"through its durable consumer `{consumer.durable}`", consumer.durable)
        for who, how, queue in _readers(s.stream):
            add("receive", s.type, who, how, queue)
        if s.external_publish:
            add("send", s.type, table.EXTERNAL, "on its own tenant's subject only")
        if s.external_read:
            add("receive", s.type, table.EXTERNAL, "its own tenant's, by a core subscription or consumers it owns")
    for r in table.RECORDS:
        for producer in r.producers:
            add("send", r.name, producer)
        for who, how, queue in _readers(r.stream):
            add("receive", r.name, who, how, queue)
    return operations


def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for s in table.SUBJECTS:
        extra: dict[str, Any] = {
            "stream": s.stream,
            "job_status": s.job_status,
            "producers": list(s.producers),
            "consumers": [{"service": c.service, "durable": c.durable} for c in s.consumers],
            "external_publish": s.external_publish,
            "external_read": s.external_read,
        }
        messages[s.type] = _message(s.type, s.payload.__name__, s.summary, "<tenant>:<envelope id>", extra)
        channels[s.type] = _channel(s.type, f"{s.type}.{{tenant}}", f"{s.summary} (stream {s.stream})")
    for r in table.RECORDS:
        extra = {"stream": r.stream, "producers": list(r.producers)}
        messages[r.name] = _message(r.name, r.payload.__name__, r.summary, r.msg_id, extra)
        channels[r.name] = _channel(r.name, r.address, f"{r.summary} (stream {r.stream})")
    return {
        "asyncapi": "3.0.0",
        "id": "urn:maskline:bus",
        "info": {
            "title": "maskline bus",
            "version": f"{CONTRACT_VERSION}.0",
            "description": (
                "Every subject of maskline's NATS bus, generated from contracts/subjects.py. Events are "
                "JSON envelopes (id, type, version, time, source, tenant, job_id, trace_id, data) on JetStream "
                "streams; dead letters and audit records are plain JSON records. Payload schemas are JSON Schema "
                "draft-07. An outside system publishes and reads only its own tenant's subjects."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {
                "host": "localhost:4222",
                "protocol": "nats",
                "description": "the embedded stack's nats-server (MASKLINE_NATS_URL)",
                "security": [_ref("components", "securitySchemes", "nkey")],
            }
        },
        "channels": channels,
        "operations": _operations(),
        "components": {
            "messages": messages,
            "parameters": PARAMETERS,
            "securitySchemes": {
                "nkey": {
                    "type": "asymmetricEncryption",
                    "description": "a NATS nkey (Ed25519) per identity; its permissions are generated from the same table",
                }
            },
        },
    }
