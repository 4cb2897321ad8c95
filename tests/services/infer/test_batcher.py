"""Jobs' images of one model version go to Triton together when they arrive while its requests are
in flight, never waiting for company; each job gets its own rows back, or the request's failure."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from maskline.services.infer.triton import Batcher

pytestmark = pytest.mark.unit


class SlowModel:
    """Answers each request after `delay_s` with the input's first value per image (as float16)."""

    def __init__(self, delay_s: float = 0.05, fail: bool = False) -> None:
        self.delay_s, self.fail = delay_s, fail
        self.requests: list[int] = []
        self.running = self.most_at_once = 0

    async def __call__(self, joined: np.ndarray) -> np.ndarray:
        self.requests.append(joined.shape[0])
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(self.delay_s)
        self.running -= 1
        if self.fail:
            raise RuntimeError("Triton said no")
        return joined[:, :1, :1, :1].astype(np.float16)


def image(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 3, 4, 4), value, np.float32)


async def test_alone_a_job_goes_at_once_and_under_load_jobs_share_requests() -> None:
    model = SlowModel()
    batcher = Batcher(model, limit=8, in_flight=1)
    started = asyncio.get_running_loop().time()
    alone = await batcher.infer(image(1.0))
    assert model.requests == [1] and asyncio.get_running_loop().time() - started < 0.09  # no waiting for company
    assert alone.shape == (1, 1, 1, 1) and float(alone[0, 0, 0, 0]) == 1.0
    model.requests.clear()
    results = await asyncio.gather(*(batcher.infer(image(float(i), n=1 + i % 2)) for i in range(7)))
    # seven jobs, ten images: two requests of at most eight images
    assert model.requests == [7, 3]
    for i, rows in enumerate(results):
        assert rows.shape[0] == 1 + i % 2 and (rows == i).all()  # each job its own rows


async def test_a_request_never_exceeds_the_limit_and_in_flight_requests_are_bounded() -> None:
    model = SlowModel()
    batcher = Batcher(model, limit=4, in_flight=2)
    await asyncio.gather(*(batcher.infer(image(1.0)) for _ in range(11)))
    assert model.requests == [4, 4, 3] and model.most_at_once == 2  # two at once: one per Triton instance


async def test_every_job_of_a_failed_request_gets_the_failure() -> None:
    batcher = Batcher(SlowModel(fail=True), limit=8, in_flight=1)
    outcomes = await asyncio.gather(*(batcher.infer(image(1.0)) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
