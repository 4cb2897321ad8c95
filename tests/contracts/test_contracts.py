from __future__ import annotations

import json

import msgspec
import pytest

from maskline.contracts import schema, seg_v1
from maskline.contracts.envelope import Envelope

pytestmark = pytest.mark.unit


def test_committed_schemas_are_generated_from_the_contracts() -> None:
    files = schema.render()
    committed = {p.name: p.read_text() for p in schema.SCHEMA_DIR.glob("*.json")}
    assert committed == files, "stale schemas: run `just schemas` (python -m maskline.contracts.schema)"


def test_every_subject_has_a_schema_with_the_envelope_fields() -> None:
    for subject in seg_v1.PAYLOADS:
        doc = json.loads((schema.SCHEMA_DIR / f"{subject}.json").read_text())
        envelope = next(v for k, v in doc["definitions"].items() if k.startswith("Envelope"))
        assert {"id", "type", "version", "time", "source", "tenant", "job_id", "trace_id", "data"} <= set(envelope["properties"])


def test_consumers_skip_unknown_fields_so_a_newer_minor_still_decodes() -> None:
    raw = {
        "id": "j:seg.v1.requested",
        "type": "seg.v1.requested",
        "version": "1.8",
        "time": "2026-01-01T00:00:00Z",
        "source": "x",
        "tenant": "t",
        "job_id": "j",
        "trace_id": "tr",
        "added_in_1_7": True,
        "data": {"image": {"key": "k", "size": 1, "sha256": "0" * 64}, "new_field": 1},
    }
    env = msgspec.json.decode(json.dumps(raw), type=Envelope[seg_v1.SegmentationRequested])
    assert env.data.options == seg_v1.SegmentationOptions()


@pytest.mark.parametrize("job_id", ["a.b", "with space", "x" * 129, ""])
def test_ids_that_cannot_be_a_subject_token_are_refused(job_id: str) -> None:
    raw = {
        "id": "i",
        "type": "t",
        "time": "2026-01-01T00:00:00Z",
        "source": "x",
        "tenant": "t",
        "job_id": job_id,
        "trace_id": "tr",
        "data": {"image": {"key": "k", "size": 1, "sha256": "0" * 64}},
    }
    with pytest.raises(msgspec.ValidationError, match="job_id"):
        msgspec.json.decode(json.dumps(raw), type=Envelope[seg_v1.SegmentationRequested])
