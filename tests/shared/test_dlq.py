"""Dead letters through a real nats-server: listed newest first, re-driven to their subject once."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from maskline.contracts.common_v1 import DeadLetter
from maskline.shared import dlq
from maskline.shared.bus import MSG_ID, Bus

pytestmark = pytest.mark.nats


async def test_list_and_redrive(bus: Bus) -> None:
    job = uuid.uuid4().hex
    original = msgspec.json.encode({"tenant": "t1", "job_id": job, "type": "seg.v1.ingested"})
    letter = DeadLetter(
        consumer="infer",
        stream="SEG",
        stream_seq=7,
        subject="seg.v1.ingested",
        deliveries=5,
        code="model_not_found",
        reason="model 'x' is not registered",
        data=original,
        headers={MSG_ID: f"{job}:seg.v1.ingested"},
    )
    await bus.js.publish("dlq.infer", msgspec.json.encode(letter), headers={MSG_ID: f"dlq:{job}"})
    found = [x for x in await dlq.letters(bus.js) if x.job_id == job]
    assert len(found) == 1 and found[0].tenant == "t1" and found[0].code == "model_not_found"
    seq = found[0].seq
    sub = await bus.js.subscribe("seg.v1.ingested", ordered_consumer=True, deliver_policy="new")
    done = await dlq.redrive(bus.js, seq)
    assert done["job_id"] == job and done["msg_id"] == f"{job}:seg.v1.ingested:redrive:{seq}"
    msg = await sub.next_msg(timeout=5)
    assert msg.data == original and msg.headers[MSG_ID] == done["msg_id"]
    assert not [x for x in await dlq.letters(bus.js) if x.job_id == job]  # the letter is gone
    with pytest.raises(dlq.LetterNotFound):
        await dlq.redrive(bus.js, seq)  # twice is refused, not duplicated
    await sub.unsubscribe()
