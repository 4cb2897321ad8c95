"""The CloudEvents mapping is lossless both ways and gives valid structured-mode events."""

from __future__ import annotations

import re

import msgspec
import pytest

from maskline.contracts import seg_v1
from maskline.contracts.cloudevents import from_cloudevent, to_cloudevent
from maskline.contracts.common_v1 import ObjectRef
from maskline.contracts.envelope import Envelope, new_trace_id, now

pytestmark = pytest.mark.unit
EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")  # CloudEvents 1.0: lowercase a-z, 0-9, at most 20 characters
CORE = {"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "data"}


def envelope() -> Envelope[seg_v1.SegmentationRequested]:
    return Envelope(
        id="job-1:seg.v1.requested",
        type=seg_v1.REQUESTED,
        time=now(),
        source="gateway",
        tenant="acme",
        job_id="job-1",
        trace_id=new_trace_id(),
        data=seg_v1.SegmentationRequested(image=ObjectRef(key="inputs/acme/job-1/upload", size=3, sha256="0" * 64)),
        deadline=now(),
    )


def test_an_envelope_round_trips_through_a_cloudevent() -> None:
    original = envelope()
    as_json = msgspec.to_builtins(original)
    event = to_cloudevent(as_json)
    assert event["specversion"] == "1.0" and event["type"] == "dev.maskline.seg.v1.requested"
    assert event["source"] == "/maskline/gateway" and event["dataschema"].endswith("/seg.v1.requested.json")
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", event["traceparent"])
    assert all(EXTENSION_NAME.match(name) for name in set(event) - CORE)
    back = msgspec.convert(from_cloudevent(event), Envelope[seg_v1.SegmentationRequested])
    assert back == original


def test_an_event_that_is_not_a_maskline_cloudevent_is_refused() -> None:
    event = to_cloudevent(msgspec.to_builtins(envelope()))
    with pytest.raises(ValueError, match="specversion"):
        from_cloudevent({**event, "specversion": "0.3"})
    with pytest.raises(ValueError, match="not a maskline event"):
        from_cloudevent({**event, "type": "com.example.other"})
