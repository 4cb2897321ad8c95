"""Dead letters through a real nats-server: listed newest first with the subject's tenant, re-processed
by the consumer that gave up on them (nobody republishes its input), then removed once."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from maskline.contracts.common_v1 import DeadLetter
from maskline.contracts.envelope import Envelope, now
from maskline.shared.bus import MSG_ID, Bus
from maskline.shared.errors import PermanentError
from maskline.shared.operations import dlq
from maskline.shared.service.consumer import Consumer, ConsumerSpec

pytestmark = pytest.mark.nats


class Ping(msgspec.Struct, frozen=True):
    n: int


async def test_list_get_and_remove(bus: Bus) -> None:
    job = uuid.uuid4().hex
    # The data claims tenant "victim", but the letter came from tenant t1's subject: t1's it is.
    original = msgspec.json.encode({"tenant": "victim", "job_id": job, "type": "seg.v1.ingested"})
    letter = DeadLetter(
        consumer="infer",
        stream="SEG",
        stream_seq=7,
        subject="seg.v1.ingested.t1",
        deliveries=5,
        code="model_not_found",
        reason="model 'x' is not registered",
        data=original,
        headers={MSG_ID: f"t1:{job}:seg.v1.ingested"},
    )
    await bus.js.publish("dlq.infer", msgspec.json.encode(letter), headers={MSG_ID: f"dlq:{job}"})
    found = [x for x in await dlq.letters(bus.js) if x.job_id == job]
    assert len(found) == 1 and found[0].tenant == "t1" and found[0].code == "model_not_found"
    summary, full = await dlq.get(bus.js, found[0].seq)
    assert full.data == original and summary.subject == "seg.v1.ingested.t1"
    await dlq.remove(bus.js, found[0].seq)
    assert not [x for x in await dlq.letters(bus.js) if x.job_id == job]
    with pytest.raises(dlq.LetterNotFound):
        await dlq.remove(bus.js, found[0].seq)


async def test_the_consumer_that_gave_up_reprocesses_its_letter(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    fixed = asyncio.Event()
    outputs: list[bytes] = []

    async def on_output(msg: object) -> None:
        outputs.append(msg.data)  # type: ignore[attr-defined]

    await bus.nc.subscribe(f"{subject}.done.t1", cb=on_output)

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        if not fixed.is_set():
            raise PermanentError("model missing", code="model_not_found")
        done = Envelope(
            id=f"{env.job_id}:done", type=f"{subject}.done", time=now(), source="t", tenant=env.tenant, job_id=env.job_id,
            trace_id="tr", data=Ping(env.data.n + 1),
        )  # fmt: skip
        return [done]

    spec = ConsumerSpec(f"t-{uuid.uuid4().hex[:8]}", "SEG", f"{subject}.*", Ping, handler, None, 1)
    consumer = Consumer(bus, spec, source="test", max_deliver=2, ack_wait_s=5)
    task = asyncio.create_task(consumer.run())
    job = uuid.uuid4().hex
    env = Envelope(id=f"{job}:x", type=subject, time=now(), source="t", tenant="t1", job_id=job, trace_id="tr", data=Ping(1))
    await bus.publish(env)
    for _ in range(200):
        letters = [x for x in await dlq.letters(bus.js) if x.job_id == job]
        if letters:
            break
        await asyncio.sleep(0.05)
    consumer.stop()
    await asyncio.wait_for(task, 5)
    _, letter = await dlq.get(bus.js, letters[0].seq)
    with pytest.raises(PermanentError):
        await consumer.reprocess(letter)  # cause not fixed yet: the letter stays
    fixed.set()
    await consumer.reprocess(letter)
    for _ in range(100):
        if outputs:
            break
        await asyncio.sleep(0.05)
    assert msgspec.json.decode(outputs[0], type=Envelope[Ping]).data.n == 2
