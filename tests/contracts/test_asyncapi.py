"""The AsyncAPI document and the job-state projection come from the one system table."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from maskline.contracts import asyncapi, schema
from maskline.contracts import subjects as table
from maskline.infra.nats import permissions
from maskline.shared.jobs import state as jobs

pytestmark = pytest.mark.unit


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_committed_asyncapi_document_is_generated_from_the_table() -> None:
    assert schema.ASYNCAPI.read_text() == schema.render_asyncapi(), "stale: run `just schemas`"


def readers(stream: str) -> set[str]:
    """Who reads a whole stream: audit's durables, and the short-lived readers (listings, trails)."""
    return {r.service for r in table.STREAM_READERS if r.stream == stream} | {
        who for who, streams in table.READS.items() if stream in streams
    }


def operations_on(doc: dict[str, Any], channel: str) -> set[str]:
    return {name for name, op in doc["operations"].items() if op["channel"]["$ref"] == f"#/channels/{channel}"}


def test_every_subject_is_a_channel_with_its_producers_and_consumers_as_operations() -> None:
    doc = asyncapi.document()
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == {s.type for s in table.SUBJECTS} | {r.name for r in table.RECORDS}
    for s in table.SUBJECTS:
        channel = doc["channels"][s.type]
        assert channel["address"] == f"{s.type}.{{tenant}}"
        message = resolve(doc, channel["messages"][s.type]["$ref"])
        assert (schema.SCHEMA_DIR.parent / message["payload"]["schema"]["$ref"]).is_file()
        expected = {f"{p}.send.{s.type}" for p in s.producers} | {f"{c.service}.receive.{s.type}" for c in s.consumers}
        expected |= {f"{who}.receive.{s.type}" for who in readers(s.stream)}
        expected |= {f"external.send.{s.type}"} if s.external_publish else set()
        expected |= {f"external.receive.{s.type}"} if s.external_read else set()
        assert operations_on(doc, s.type) == expected, s.type
    for r in table.RECORDS:
        channel = doc["channels"][r.name]
        assert channel["address"] == r.address
        assert set(channel.get("parameters", {})) == set(re.findall(r"\{(\w+)\}", r.address))
        message = resolve(doc, channel["messages"][r.name]["$ref"])
        assert (schema.SCHEMA_DIR.parent / message["payload"]["schema"]["$ref"]).is_file()
        expected = {f"{p}.send.{r.name}" for p in r.producers} | {f"{who}.receive.{r.name}" for who in readers(r.stream)}
        assert operations_on(doc, r.name) == expected, r.name
    for op in doc["operations"].values():  # every reference in an operation resolves
        resolve(doc, op["channel"]["$ref"])
        for ref in op["messages"]:
            resolve(doc, ref["$ref"])
    for channel in doc["channels"].values():
        for ref in channel.get("parameters", {}).values():
            resolve(doc, ref["$ref"])
    json.dumps(doc)


def as_pattern(address: str) -> str:
    """A channel address as the NATS subject pattern it stands for (`{tenant}` → `*`)."""
    return re.sub(r"\{\w+\}", "*", address)


def covers(pattern: str, subject: str) -> bool:
    """Whether NATS pattern `pattern` matches every subject that `subject` (itself perhaps a pattern) matches."""
    tokens, wanted = pattern.split("."), subject.split(".")
    for i, token in enumerate(tokens):
        if token == ">":
            return len(wanted) > i
        if i >= len(wanted) or wanted[i] == ">" or token not in ("*", wanted[i]):
            return False
    return len(tokens) == len(wanted)


def test_every_subject_anyone_may_publish_on_is_a_channel() -> None:
    patterns = [as_pattern(c["address"]) for c in asyncapi.document()["channels"].values()]
    # From the NATS permissions of every identity that runs (the admin may publish anything):
    # JetStream, key-value and services-API subjects and inboxes are the server's protocol, not messages.
    allowed: set[str] = set()
    for name in table.SERVICES:
        allowed |= permissions.service(name).publish
    allowed |= permissions.external("partner", "acme").publish
    published = {s for s in allowed if not s.startswith(("$", "_INBOX.", "maskline."))}
    assert {"dlq.ingest", "dlq.audit", "audit.v1.checkpoint", "seg.v1.requested.acme"} <= published
    assert [s for s in published if not any(covers(p, s) for p in patterns)] == []
    # and from the table itself: every stream holds channels, every channel lies in one stream
    assert {table.AUDIT_SUBJECTS[0], table.AUDIT_SUBJECTS[1], "dlq.*"} <= set(patterns)
    for stream, filter_subject in table.STREAMS.items():
        assert any(covers(filter_subject, p) for p in patterns), stream
    for pattern in patterns:
        assert sum(covers(f, pattern) for f in table.STREAMS.values()) == 1, pattern


def test_a_durable_consumer_is_the_nats_binding_queue_of_its_receive_operation() -> None:
    operations = asyncapi.document()["operations"]
    durables = {(c.service, s.type): c.durable for s in table.SUBJECTS for c in s.consumers}
    for s in table.SUBJECTS:
        durables |= {(r.service, s.type): r.durable for r in table.STREAM_READERS if r.stream == s.stream}
    for r in table.RECORDS:
        durables |= {(reader.service, r.name): reader.durable for reader in table.STREAM_READERS if reader.stream == r.stream}
    queued = {}
    for name, op in operations.items():
        if "bindings" in op:
            assert op["action"] == "receive", name
            assert set(op["bindings"]) == {"nats"} and set(op["bindings"]["nats"]) == {"queue", "bindingVersion"}
            assert op["bindings"]["nats"]["bindingVersion"] == "0.1.0"
            assert len(op["bindings"]["nats"]["queue"]) <= 255  # the binding's limit
            who, _, channel = name.partition(".receive.")
            queued[(who, channel)] = op["bindings"]["nats"]["queue"]
    assert queued == durables
    assert operations["weights.receive.model.v1.register.requested"]["bindings"]["nats"]["queue"] == "weights-registrations"
    assert operations["audit.receive.dlq.record"]["bindings"]["nats"]["queue"] == "audit-dlq"
    assert "bindings" not in operations["external.receive.seg.v1.completed"]  # its own consumers, no shared queue


def test_the_job_state_projection_folds_exactly_the_subjects_the_table_gives_a_status() -> None:
    with_status = {s.type for s in table.SUBJECTS if s.job_status}
    assert set(jobs.PAYLOADS) == with_status == set(jobs.STATUS_OF)
    assert jobs.STATUS_OF["seg.v1.augment.requested"] == "ingested"
    assert jobs.STATUS_OF["model.v1.registered"] == "completed"  # of a registration job (tests/shared/jobs/test_state.py)


def test_notify_reads_every_event_that_can_end_a_job() -> None:
    final = {s.type for s in table.SUBJECTS if s.job_status in table.FINAL_STATUSES}
    assert final == {s.type for s in table.SUBJECTS if any(c.service == table.NOTIFY for c in s.consumers)}
    assert jobs.ends_job("registration", "model.v1.registered") and not jobs.ends_job("model-merge", "model.v1.registered")
    assert jobs.ends_job("model-merge", "model.v1.merged") and not jobs.ends_job("quantization", "model.v1.quantize.progressed")
