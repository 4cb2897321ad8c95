"""The AsyncAPI 3.0 document of the bus, generated from the system table (`subjects.py`).

One channel per subject (`<type>.<tenant>`, the tenant a parameter), its message pointing at the
published JSON Schema of its envelope; one operation per producer (`send`) and per consumer
(`receive`), named `<service>.<send|receive>.<subject>`, plus the outside systems' operations
where the table lets them publish or read. Written to `contracts/asyncapi.json` by
`python -m maskline.contracts.schema` and checked for staleness like the schemas.
"""

from __future__ import annotations

from typing import Any

from maskline.contracts import subjects as table
from maskline.contracts.envelope import CONTRACT_VERSION

DRAFT_07 = "application/schema+json;version=draft-07"


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)}


def _operation(action: str, subject: table.Subject, who: str) -> dict[str, Any]:
    verb = "publishes" if action == "send" else "consumes"
    return {
        "action": action,
        "channel": _ref("channels", subject.type),
        "summary": f"{who} {verb} {subject.type}",
        "messages": [_ref("channels", subject.type, "messages", subject.type)],
        "tags": [{"name": who}],
    }


def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for s in table.SUBJECTS:
        messages[s.type] = {
            "name": s.type,
            "title": s.payload.__name__,
            "summary": s.summary,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {"Nats-Msg-Id": {"type": "string", "description": "<tenant>:<envelope id>, for de-duplication"}},
            },
            "payload": {"schemaFormat": DRAFT_07, "schema": {"$ref": f"schemas/{s.type}.json"}},
            "x-maskline": {
                "stream": s.stream,
                "job_status": s.job_status,
                "producers": list(s.producers),
                "consumers": [{"service": c.service, "durable": c.durable} for c in s.consumers],
                "external_publish": s.external_publish,
                "external_read": s.external_read,
            },
        }
        channels[s.type] = {
            "address": f"{s.type}.{{tenant}}",
            "title": s.type,
            "description": f"{s.summary} (stream {s.stream})",
            "parameters": {"tenant": _ref("components", "parameters", "tenant")},
            "messages": {s.type: _ref("components", "messages", s.type)},
        }
        for producer in s.producers:
            operations[f"{producer}.send.{s.type}"] = _operation("send", s, producer)
        for consumer in s.consumers:
            operations[f"{consumer.service}.receive.{s.type}"] = _operation("receive", s, consumer.service)
        if s.external_publish:
            operations[f"{table.EXTERNAL}.send.{s.type}"] = _operation("send", s, table.EXTERNAL)
        if s.external_read:
            operations[f"{table.EXTERNAL}.receive.{s.type}"] = _operation("receive", s, table.EXTERNAL)
    return {
        "asyncapi": "3.0.0",
        "id": "urn:maskline:bus",
        "info": {
            "title": "maskline bus",
            "version": f"{CONTRACT_VERSION}.0",
            "description": (
                "Every subject of maskline's NATS bus, generated from contracts/subjects.py. Messages are "
                "JSON envelopes (id, type, version, time, source, tenant, job_id, trace_id, data) on JetStream "
                "streams; an outside system publishes and reads only its own tenant's subjects."
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
        "operations": operations,
        "components": {
            "messages": messages,
            "parameters": {
                "tenant": {"description": "the tenant the message belongs to; an identity bound to a tenant uses only its own"}
            },
            "securitySchemes": {
                "nkey": {
                    "type": "asymmetricEncryption",
                    "description": "a NATS nkey (Ed25519) per identity; its permissions are generated from the same table",
                }
            },
        },
    }
