"""Admission policy: per-tenant rate and unfinished-job limits, and the pipeline's backlog."""

from __future__ import annotations

import time

import pytest

from maskline.shared.admission import Admission, Refused, TokenBucket

pytestmark = pytest.mark.unit


class FixedBacklog:
    def __init__(self, size: int) -> None:
        self.value = size

    async def size(self) -> int:
        return self.value


def admission(backlog: int = 0, **overrides: tuple[float, float, int]) -> Admission:
    return Admission(
        FixedBacklog(backlog), max_backlog=10, tenant_rate_per_s=1000, tenant_burst=1000, tenant_max_jobs=3, overrides=overrides
    )


async def refused(a: Admission, tenant: str, job: str) -> Refused:
    with pytest.raises(Refused) as err:
        await a.admit(tenant, job)
    return err.value


async def test_a_tenant_with_too_many_unfinished_jobs_gets_429_until_one_finishes() -> None:
    a = admission()
    for n in range(3):
        await a.admit("t", f"j{n}")
    no = await refused(a, "t", "j3")
    assert (no.status, no.code) == (429, "too_many_jobs")
    await a.admit("u", "other-tenant")  # another tenant is not held up
    a.finished("t", "j0")
    await a.admit("t", "j3")


async def test_the_rate_limit_refuses_with_the_wait_until_the_next_token() -> None:
    a = admission(slow=(2.0, 2.0, 100))
    await a.admit("slow", "a")
    await a.admit("slow", "b")
    no = await refused(a, "slow", "c")
    assert (no.status, no.code) == (429, "rate_limited") and 0 < no.retry_after_s <= 0.5


async def test_a_full_pipeline_refuses_everyone_with_503() -> None:
    a = admission(backlog=10)
    no = await refused(a, "t", "j")
    assert (no.status, no.code) == (503, "overloaded")
    assert a.running.get("t", set()) == set()  # a refused job does not count as running


def test_a_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=50.0, burst=1.0)
    assert bucket.take() == 0.0 and bucket.take() > 0
    time.sleep(0.05)
    assert bucket.take() == 0.0
