"""The gate every command passes before its handler, whoever published it, against a real
nats-server: admission at the bus's limits, a job id that is already another request's, a finished
job's command repeated, and a job counted until its end goes by."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from maskline.contracts import seg_v1
from maskline.contracts.common_v1 import DeadLetter, JobFailed, ModelRef
from maskline.contracts.envelope import Envelope, command, next_event
from maskline.shared.bus import MSG_ID, Bus, encode
from maskline.shared.jobs.admission import Admission
from maskline.shared.jobs.gate import CommandGate
from maskline.shared.jobs.state import JobStore
from maskline.shared.service.consumer import Consumer, ConsumerSpec
from tests.shared.service.test_consumer import Ping, collect, wait_for

pytestmark = pytest.mark.nats


def request(n: int, job: str | None = None, tenant: str = "t1") -> Envelope[Ping]:
    """A command (its type starts a segmentation job) with a payload that tells requests apart."""
    return command(seg_v1.REQUESTED, "anyone", Ping(n), tenant=tenant, job_id=job or uuid.uuid4().hex)


@asynccontextmanager
async def gated(bus: Bus, subject: str, handled: list[int], **limits: Any) -> AsyncIterator[tuple[Consumer[Ping], CommandGate]]:
    jobs = await JobStore.opened(bus.js)
    settings = {"backlog": None, "max_backlog": 0, "tenant_rate_per_s": 1000.0, "tenant_burst": 1000.0, "tenant_max_jobs": 100}
    gate = CommandGate(jobs, Admission(**{**settings, **limits}))  # type: ignore[arg-type]
    await gate.follow_ends(bus.nc, {"SEG"})

    async def handler(env: Envelope[Ping]) -> list[Envelope[Any]]:
        handled.append(env.data.n)
        return []

    spec = ConsumerSpec(
        durable=f"t-{uuid.uuid4().hex[:8]}",
        stream="SEG",
        subject=f"{subject}.*",
        payload=Ping,
        handler=handler,
        failure_subject=f"{subject}.failed",
    )
    consumer = Consumer(bus, spec, source="test", max_deliver=3, ack_wait_s=5, gate=gate)
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer, gate
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)


async def send(bus: Bus, subject: str, env: Envelope[Ping]) -> None:
    """As an outside system would: its own subject, whatever its envelope claims (`source` included)."""
    await bus.js.publish(f"{subject}.{env.tenant}", encode(env), headers={MSG_ID: uuid.uuid4().hex})


async def test_a_burst_over_the_bus_rate_fails_as_rate_limited_without_dead_letters(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    failed, handled = await collect(bus, f"{subject}.failed.t1"), []
    async with gated(bus, subject, handled, tenant_rate_per_s=0.01, tenant_burst=3.0) as (consumer, _):
        for n in range(8):
            await send(bus, subject, msgspec.structs.replace(request(n), source="gateway"))  # a forged source counts for nothing
        await wait_for(lambda: len(handled) + len(failed) == 8)
    codes = [msgspec.json.decode(f, type=Envelope[JobFailed]).data.code for f in failed]
    assert len(handled) == 3 and codes == ["rate_limited"] * 5
    assert consumer.stats.dead_lettered == 0  # nothing to re-drive: publish again later


async def test_a_tenant_with_too_many_unfinished_jobs_is_admitted_again_once_one_ends(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    failed, handled = await collect(bus, f"{subject}.failed.t1"), []
    async with gated(bus, subject, handled, tenant_max_jobs=2) as (_, gate):
        first, second = request(1), request(2)
        for env in (first, second, request(3)):
            await send(bus, subject, env)
        await wait_for(lambda: len(handled) == 2 and len(failed) == 1)
        assert msgspec.json.decode(failed[0], type=Envelope[JobFailed]).data.code == "too_many_jobs"
        done = seg_v1.SegmentationCompleted(artifacts={}, model=ModelRef(name="m", version=1), width=1, height=1, regions=0)
        await bus.publish(next_event(first, seg_v1.COMPLETED, "merge", done))  # the job's end, heard on the bus
        await wait_for(lambda: (first.tenant, first.job_id) not in set(gate.admission.unfinished()))
        await send(bus, subject, request(4))
        await wait_for(lambda: handled == [1, 2, 4])


async def test_a_command_under_another_requests_job_id_is_refused_and_the_job_left_alone(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    failed, letters, handled = await collect(bus, f"{subject}.failed.t1"), await collect(bus, "dlq.>"), []
    jobs = await JobStore.opened(bus.js)
    original = request(1)
    await jobs.apply(original)  # the job as its own request started it
    async with gated(bus, subject, handled) as (consumer, _):
        await send(bus, subject, request(666, job=original.job_id))  # same job id, another request
        await wait_for(lambda: consumer.stats.dead_lettered == 1)
        await send(bus, subject, original)  # its own request again (a redelivery, a re-drive): it runs
        await wait_for(lambda: handled == [1])
    mine = [msgspec.json.decode(d, type=DeadLetter) for d in letters]
    assert [letter.code for letter in mine if letter.consumer == consumer.spec.durable] == ["job_exists"]
    assert failed == []  # the job it named is not failed: it is the original's
    state = await jobs.get("t1", original.job_id)
    assert state is not None and state.status == "requested"


async def test_a_finished_jobs_command_repeated_is_skipped(bus: Bus) -> None:
    subject = f"seg.v1.t{uuid.uuid4().hex[:8]}"
    handled: list[int] = []
    jobs = await JobStore.opened(bus.js)
    original = request(5)
    await jobs.apply(original)
    done = seg_v1.SegmentationCompleted(artifacts={}, model=ModelRef(name="m", version=1), width=1, height=1, regions=0)
    await jobs.apply(next_event(original, seg_v1.COMPLETED, "merge", done))
    async with gated(bus, subject, handled) as (consumer, _):
        await send(bus, subject, original)
        await wait_for(lambda: consumer.stats.skipped == 1)
    assert handled == []
