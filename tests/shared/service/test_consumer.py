"""The consumer runtime against a real nats-server: ack, retry, poison, dead letters, failed events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from maskline.contracts.common_v1 import DeadLetter, JobFailed
from maskline.contracts.envelope import Envelope, now
from maskline.shared.bus import MSG_ID, Bus
from maskline.shared.errors import DependencyUnavailable, PermanentError, RetryableError
from maskline.shared.service.consumer import Consumer, ConsumerSpec

pytestmark = pytest.mark.nats


class Ping(msgspec.Struct, frozen=True):
    n: int


def envelope(subject: str, n: int, *, version: str = "1.0", job: str | None = None) -> Envelope[Ping]:
    job_id = job or uuid.uuid4().hex
    return Envelope(
        id=f"{job_id}:{subject}",
        type=subject,
        version=version,
        time=now(),
        source="test",
        tenant="t1",
        job_id=job_id,
        trace_id="trace",
        data=Ping(n),
    )


@asynccontextmanager
async def running(bus: Bus, handler: Callable[[Envelope[Ping]], Any], subject: str) -> AsyncIterator[Consumer[Ping]]:
    spec = ConsumerSpec(
        durable=f"t-{uuid.uuid4().hex[:8]}",
        stream="SEG",
        subject=f"{subject}.*",  # every tenant of one event type, as the subject table's filters
        payload=Ping,
        handler=handler,
        failure_subject=f"{subject}.failed",
        concurrency=2,
    )
    consumer = Consumer(bus, spec, source="test", max_deliver=3, ack_wait_s=5)
    task = asyncio.create_task(consumer.run())
    yield consumer
    consumer.stop()
    await asyncio.wait_for(task, 5)


async def collect(bus: Bus, subject: str) -> list[bytes]:
    seen: list[bytes] = []

    async def cb(msg: Any) -> None:
        seen.append(msg.data)

    await bus.nc.subscribe(subject, cb=cb)
    return seen


async def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_handler_output_is_published_and_message_acked(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    handled: list[int] = []

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        handled.append(env.data.n)
        return [envelope(subject + ".next", env.data.n + 1, job=env.job_id)]

    outputs = await collect(bus, subject + ".next.t1")
    async with running(bus, handler, subject) as consumer:
        await bus.publish(envelope(subject, 1))
        await wait_for(lambda: len(outputs) == 1)
        await asyncio.sleep(0.3)
    assert handled == [1]
    assert msgspec.json.decode(outputs[0], type=Envelope[Ping]).data.n == 2
    assert consumer.stats.processed == 1


async def test_garbage_is_dead_lettered_and_the_next_message_still_goes_through(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    handled: list[int] = []

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        handled.append(env.data.n)
        return []

    letters = await collect(bus, "dlq.>")
    async with running(bus, handler, subject) as consumer:
        await bus.js.publish(f"{subject}.t1", b"\x00\xffnot json at all", headers={MSG_ID: uuid.uuid4().hex})
        await bus.publish(envelope(subject, 7))
        await wait_for(lambda: handled == [7] and consumer.stats.dead_lettered == 1)
    letter = next(
        msgspec.json.decode(d, type=DeadLetter)
        for d in letters
        if msgspec.json.decode(d, type=DeadLetter).consumer == consumer.spec.durable
    )
    assert letter.code == "invalid_message"
    assert letter.data == b"\x00\xffnot json at all"
    assert "cannot decode" in letter.reason


async def test_unknown_contract_major_fails_the_job_with_a_reason(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    failed = await collect(bus, f"{subject}.failed.t1")

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        raise AssertionError("must not be called for a v2 message")

    async with running(bus, handler, subject):
        await bus.publish(envelope(subject, 1, version="2.0", job="job-v2"))
        await wait_for(lambda: len(failed) == 1)
    event = msgspec.json.decode(failed[0], type=Envelope[JobFailed])
    assert event.job_id == "job-v2"
    assert event.data.code == "unsupported_version"
    assert "2.0" in event.data.reason


async def test_transient_errors_are_retried_until_success(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    attempts: list[int] = []

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        attempts.append(env.data.n)
        if len(attempts) < 3:
            raise RetryableError("storage blinked")
        return []

    async with running(bus, handler, subject) as consumer:
        await bus.publish(envelope(subject, 5))
        await wait_for(lambda: consumer.stats.processed == 1, timeout=20)
    assert attempts == [5, 5, 5]
    assert consumer.stats.retried == 2
    assert consumer.stats.dead_lettered == 0


async def test_permanent_error_and_exhausted_retries_end_in_failed_event_and_dead_letter(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    failed = await collect(bus, f"{subject}.failed.t1")

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        if env.data.n == 1:
            raise PermanentError("bad pixels", code="invalid_image")
        raise RetryableError("triton down")

    async with running(bus, handler, subject) as consumer:
        await bus.publish(envelope(subject, 1, job="perm"))
        await bus.publish(envelope(subject, 2, job="exhausted"))
        await wait_for(lambda: len(failed) == 2, timeout=30)
    events = {e.job_id: e.data for e in (msgspec.json.decode(f, type=Envelope[JobFailed]) for f in failed)}
    assert events["perm"].code == "invalid_image"
    assert events["perm"].reason == "bad pixels"
    assert events["exhausted"].code == "transient"
    assert "after 3 deliveries" in events["exhausted"].reason
    assert consumer.stats.dead_lettered == 2


async def test_an_envelope_claiming_another_tenant_than_its_subject_is_refused(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    handled: list[int] = []
    mine, theirs = await collect(bus, f"{subject}.failed.t1"), await collect(bus, f"{subject}.failed.victim")

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        handled.append(env.data.n)
        return []

    forged = msgspec.structs.replace(envelope(subject, 1, job="claims-victim"), tenant="victim")
    async with running(bus, handler, subject) as consumer:
        # Published on tenant t1's subject (what a t1 credential may do), claiming tenant `victim`.
        await bus.js.publish(f"{subject}.t1", msgspec.json.encode(forged), headers={MSG_ID: uuid.uuid4().hex})
        await wait_for(lambda: len(mine) == 1)
    assert handled == [] and consumer.stats.dead_lettered == 1
    failed = msgspec.json.decode(mine[0], type=Envelope[JobFailed])
    assert failed.tenant == "t1" and failed.data.code == "tenant_mismatch" and "victim" in failed.data.reason
    assert theirs == []  # the claimed tenant's job is never touched


async def test_an_outage_holds_the_message_pauses_the_consumer_and_uses_up_no_deliveries(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    down = {"left": 6}
    handled: list[int] = []

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        if env.data.n == 1 and down["left"] > 0:
            down["left"] -= 1
            raise DependencyUnavailable("connection refused", dependency="triton")
        handled.append(env.data.n)
        return []

    spec = ConsumerSpec(f"t-{uuid.uuid4().hex[:8]}", "SEG", f"{subject}.*", Ping, handler, f"{subject}.failed", 1)
    consumer = Consumer(bus, spec, source="test", max_deliver=2, ack_wait_s=5, hold_s=(0.2,))
    task = asyncio.create_task(consumer.run())
    await bus.publish(envelope(subject, 1))
    await wait_for(lambda: consumer.stats.paused == "triton")
    await bus.publish(envelope(subject, 2))  # arrives during the outage: not fetched until it ends
    await asyncio.sleep(0.5)
    assert handled == [] and consumer.stats.paused == "triton"
    await wait_for(lambda: handled == [1, 2], timeout=20)
    consumer.stop()
    await asyncio.wait_for(task, 5)
    # Six failures against max_deliver=2: none dead-lettered, none counted as a retry.
    assert consumer.stats.dead_lettered == 0 and consumer.stats.retried == 0 and consumer.stats.held == 1
    assert consumer.stats.paused == ""


async def test_a_job_past_its_deadline_fails_with_deadline_exceeded(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    failed = await collect(bus, f"{subject}.failed.t1")

    async def handler(env: Envelope[Ping]) -> list[Envelope[Ping]]:
        raise AssertionError("a late job must not run")

    late = msgspec.structs.replace(envelope(subject, 1, job="late"), deadline=now() - timedelta(seconds=1))
    async with running(bus, handler, subject):
        await bus.publish(late)
        await wait_for(lambda: len(failed) == 1)
    assert msgspec.json.decode(failed[0], type=Envelope[JobFailed]).data.code == "deadline_exceeded"
