"""The AsyncAPI document and the job-state projection come from the one system table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from maskline.contracts import asyncapi, schema
from maskline.contracts import subjects as table
from maskline.shared.jobs import state as jobs

pytestmark = pytest.mark.unit


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_committed_asyncapi_document_is_generated_from_the_table() -> None:
    assert schema.ASYNCAPI.read_text() == schema.render_asyncapi(), "stale: run `just schemas`"


def test_every_subject_is_a_channel_with_its_producers_and_consumers_as_operations() -> None:
    doc = asyncapi.document()
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == {s.type for s in table.SUBJECTS}
    for s in table.SUBJECTS:
        channel = doc["channels"][s.type]
        assert channel["address"] == f"{s.type}.{{tenant}}"
        message = resolve(doc, channel["messages"][s.type]["$ref"])
        assert (schema.SCHEMA_DIR.parent / message["payload"]["schema"]["$ref"]).is_file()
        expected = {f"{p}.send.{s.type}" for p in s.producers} | {f"{c.service}.receive.{s.type}" for c in s.consumers}
        expected |= {f"external.send.{s.type}"} if s.external_publish else set()
        expected |= {f"external.receive.{s.type}"} if s.external_read else set()
        found = {name for name, op in doc["operations"].items() if op["channel"]["$ref"] == f"#/channels/{s.type}"}
        assert found == expected, s.type
    for op in doc["operations"].values():  # every reference in an operation resolves
        resolve(doc, op["channel"]["$ref"])
        for ref in op["messages"]:
            resolve(doc, ref["$ref"])
    json.dumps(doc)


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
