"""Admission policy: per-tenant rate and unfinished-job limits, and the pipeline's backlog (read
from a real nats-server's consumer state)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from nats.js.api import ConsumerConfig, StreamConfig

from maskline.shared.bus import Bus
from maskline.shared.jobs import admission as admission_module
from maskline.shared.jobs.admission import Admission, Backlog, Refused, TokenBucket


class FixedBacklog:
    def __init__(self, size: int) -> None:
        self.value = size

    async def size(self) -> int:
        return self.value

    def admitted(self) -> None:
        self.value += 1


def admission(backlog: int = 0, **overrides: tuple[float, float, int]) -> Admission:
    return Admission(
        FixedBacklog(backlog), max_backlog=10, tenant_rate_per_s=1000, tenant_burst=1000, tenant_max_jobs=3, overrides=overrides
    )


async def refused(a: Admission, tenant: str, job: str) -> Refused:
    with pytest.raises(Refused) as err:
        await a.admit(tenant, job)
    return err.value


@pytest.mark.unit
async def test_a_tenant_with_too_many_unfinished_jobs_gets_429_until_one_finishes() -> None:
    a = admission()
    for n in range(3):
        await a.admit("t", f"j{n}")
    no = await refused(a, "t", "j3")
    assert (no.status, no.code) == (429, "too_many_jobs")
    await a.admit("u", "other-tenant")  # another tenant is not held up
    a.finished("t", "j0")
    await a.admit("t", "j3")


@pytest.mark.unit
async def test_the_rate_limit_refuses_with_the_wait_until_the_next_token() -> None:
    a = admission(slow=(2.0, 2.0, 100))
    await a.admit("slow", "a")
    await a.admit("slow", "b")
    no = await refused(a, "slow", "c")
    assert (no.status, no.code) == (429, "rate_limited") and 0 < no.retry_after_s <= 0.5


@pytest.mark.unit
async def test_a_full_pipeline_refuses_everyone_with_503() -> None:
    a = admission(backlog=10)
    no = await refused(a, "t", "j")
    assert (no.status, no.code) == (503, "overloaded")
    assert not a.running.get("t")  # a refused job does not count as running


@pytest.mark.unit
def test_a_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=50.0, burst=1.0)
    assert bucket.take() == 0.0 and bucket.take() > 0
    time.sleep(0.05)
    assert bucket.take() == 0.0


@pytest.mark.unit
async def test_check_refuses_as_admit_would_and_takes_nothing() -> None:
    a = admission(slow=(0.5, 1.0, 100))
    await a.check("slow")
    await a.check("slow")  # the one token is still there
    await a.admit("slow", "a")
    no = await refused_check(a, "slow")
    assert (no.status, no.code) == (429, "rate_limited")
    assert set(a.running["slow"]) == {"a"}


@pytest.mark.unit
async def test_an_admitted_job_counts_in_the_backlog_at_once() -> None:
    a = admission(backlog=8)
    await a.admit("t", "j1")
    await a.admit("u", "j2")  # 10 now: the next one is refused before any reading could show them
    no = await refused_check(a, "t")
    assert (no.status, no.code) == (503, "overloaded")


@pytest.mark.nats
async def test_the_backlog_is_the_bus_reading_plus_what_was_admitted_since(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission_module, "BACKLOG_TTL_S", 0.2)
    stream = f"ADM{uuid.uuid4().hex[:8]}"
    await bus.js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"]))
    await bus.js.add_consumer(stream, ConsumerConfig(durable_name="stage"))
    for n in range(5):
        await bus.js.publish(f"{stream}.x", str(n).encode())
    backlog = Backlog(bus.js, stages=((stream, "stage"),))
    assert await backlog.size() == 5  # the first reading is waited for
    backlog.admitted()
    backlog.admitted()
    assert await backlog.size() == 7  # no reading yet shows them: they are counted here
    for n in range(2):  # ... until they are on the bus and a later reading sees them
        await bus.js.publish(f"{stream}.x", str(n).encode())
    await asyncio.sleep(0.25)
    await backlog.size()  # starts a reading in the background
    await asyncio.sleep(0.2)
    assert await backlog.size() == 7
    # Drained while nobody asked: the first request after a quiet spell waits for a fresh reading.
    await bus.js.purge_stream(stream)
    monkeypatch.setattr(admission_module, "BACKLOG_STALE_S", 0.3)
    await asyncio.sleep(0.35)
    assert await backlog.size() == 0
    await bus.js.delete_stream(stream)


async def refused_check(a: Admission, tenant: str) -> Refused:
    with pytest.raises(Refused) as err:
        await a.check(tenant)
    return err.value
