"""Exactly once, on a real nats-server: one final event per job through the fence, one registered
version per job through the registry's reservation — with attempts racing and repeating."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from maskline.contracts.envelope import Envelope, now
from maskline.shared.bus import Bus
from maskline.shared.jobs.fence import Claim, Fences, fenced
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.models.store import register_model
from maskline.shared.storage.filesystem import FilesystemStore

pytestmark = pytest.mark.nats


class Done(msgspec.Struct, frozen=True):
    attempt: int


def final(job: str, attempt: int) -> Envelope[Done]:
    return Envelope(
        id=f"{job}:done", type="seg.v1.tfence", time=now(), source="t", tenant="t1", job_id=job, trace_id="x", data=Done(attempt)
    )


@pytest.fixture
async def fences(bus: Bus) -> Fences:
    found = await Fences.opened(bus.js, bus)
    return found


class Published:
    """Every final event published on the test subject, as core NATS subscribers see them."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.seen: list[bytes] = []

    async def __aenter__(self) -> list[bytes]:
        async def on_event(msg: Any) -> None:
            self.seen.append(msg.data)

        self.sub = await self.bus.nc.subscribe("seg.v1.tfence.t1", cb=on_event)
        return self.seen

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.nc.flush()
        await asyncio.sleep(0.3)  # what was published has arrived
        await self.sub.unsubscribe()


async def test_racing_and_late_attempts_publish_one_final_event(bus: Bus, fences: Fences) -> None:
    job = uuid.uuid4().hex
    removed: list[int] = []

    def loser(n: int) -> Any:
        async def remove() -> None:
            removed.append(n)

        return remove

    async with Published(bus) as seen:
        won = await asyncio.gather(*(fences.finish(f"t.t1.{job}", f"a{n}", final(job, n), loser(n)) for n in range(4)))
        assert won.count(True) == 1 and sorted(removed) == sorted(n for n, w in enumerate(won) if not w)
        assert await fences.decided(f"t.t1.{job}")
        late = await fences.finish(f"t.t1.{job}", "late", final(job, 99), loser(99))  # a worker that slept through it
    assert late is False and 99 in removed
    assert len(seen) == 1 and msgspec.json.decode(seen[0], type=Envelope[Done]).data.attempt == won.index(True)


async def test_a_fenced_handler_runs_its_final_step_once_per_job(fences: Fences) -> None:
    runs: list[str] = []

    async def handler(env: Envelope[Any]) -> list[Envelope[Any]]:
        runs.append(env.job_id)
        return [final(env.job_id, len(runs))]

    job = uuid.uuid4().hex
    wrapped = fenced(fences, "t", handler)
    assert await wrapped(final(job, 0)) == [] and await wrapped(final(job, 0)) == []
    assert runs == [job]  # the redelivery found the job decided and did not run again


async def test_a_job_registers_one_version_however_often_it_runs(bus: Bus, tmp_path: Path) -> None:
    registry = await ModelRegistry.opened(bus.js)
    store = FilesystemStore(tmp_path)
    owner, name, job = "t1", f"m{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

    async def attempt(weights: bytes) -> int:
        model = await register_model(
            store, registry, bus, name=name, weights=weights, labels=("a", "b"), input_size=(8, 8), source="t", tenant=owner,
            job_id=job,
        )  # fmt: skip
        return model.version

    versions = await asyncio.gather(*(attempt(bytes([n]) * 16) for n in range(3)))
    again = await attempt(b"later")
    other = await register_model(
        store, registry, bus, name=name, weights=b"x", labels=("a", "b"), input_size=(8, 8), source="t", tenant=owner
    )
    assert len(set(versions)) == 1 and again == versions[0]
    assert [m.version for m in await registry.list(owner) if m.name == name] == sorted({versions[0], other.version})


async def test_a_claim_whose_attempt_died_is_published_by_the_next_one(bus: Bus, fences: Fences) -> None:
    job = uuid.uuid4().hex
    abandoned = Claim(attempt="dead", event=msgspec.Raw(msgspec.json.encode(final(job, 7))), claimed=0.0)
    async with Published(bus) as seen:
        kv = await bus.js.key_value("fences")
        await kv.create(f"t.t1.{job}", msgspec.json.encode(abandoned))  # claimed, then its worker died
        assert await fences.decided(f"t.t1.{job}")  # the redelivered message's worker finishes the job
        assert await fences.decided(f"t.t1.{job}")  # and a later one finds it confirmed
    assert len(seen) == 1 and msgspec.json.decode(seen[0], type=Envelope[Done]).data.attempt == 7
