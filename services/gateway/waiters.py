"""Let a request wait for its job to finish without polling: a core subscription on the terminal
subjects resolves per-job futures. Terminal events are folded into the job state before the
waiter wakes, so the answer is the same one a later GET returns."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from maskline.contracts import seg_v1
from maskline.contracts.envelope import Envelope
from maskline.shared.jobs import JobState, JobStore

_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    seg_v1.COMPLETED: msgspec.json.Decoder(Envelope[seg_v1.SegmentationCompleted]),
    seg_v1.FAILED: msgspec.json.Decoder(Envelope[seg_v1.SegmentationFailed]),
}


class CompletionWaiters:
    def __init__(self, nc: Client, jobs: JobStore) -> None:
        self.nc = nc
        self.jobs = jobs
        self._waiting: dict[str, list[asyncio.Future[JobState]]] = {}

    async def start(self) -> None:
        for subject in _decoders:
            await self.nc.subscribe(subject, cb=self._on_event)

    async def _on_event(self, msg: Msg) -> None:
        try:
            env = _decoders[msg.subject].decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError, KeyError):
            return
        futures = self._waiting.get(env.job_id)
        if not futures:
            return
        state = await self.jobs.apply(env)
        for future in futures:
            if not future.done():
                future.set_result(state)

    async def wait(self, job_id: str, timeout: float) -> JobState | None:
        """The finished job's state, or None if it is still running after `timeout` seconds."""
        future: asyncio.Future[JobState] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        try:
            state = await self.jobs.get(job_id)
            if state is not None and state.finished:
                return state
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(job_id, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiting.pop(job_id, None)
