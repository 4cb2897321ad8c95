"""Let a request wait for its job to finish without polling: a core subscription on the terminal
subjects resolves per-job futures. Terminal events are folded into the job state before the
waiter wakes, so the answer is the same one a later GET returns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from maskline.contracts import subjects as table
from maskline.contracts.envelope import Envelope
from maskline.shared.bus import tenant_token
from maskline.shared.jobs import JobState, JobStore

#: The terminal events the gateway waits on (a segmentation, a registration), from the system table.
_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    type_: msgspec.json.Decoder(Envelope[table.subject(type_).payload])  # type: ignore[misc]
    for type_ in table.GATEWAY_WAITS_ON
}


class CompletionWaiters:
    def __init__(self, nc: Client, jobs: JobStore, on_finished: Callable[[str, str], None] | None = None) -> None:
        self.nc = nc
        self.jobs = jobs
        self.on_finished = on_finished
        """Told of every job that finishes (admission control counts a tenant's unfinished jobs)."""
        self._waiting: dict[tuple[str, str], list[asyncio.Future[JobState]]] = {}

    async def start(self) -> None:
        for type_ in _decoders:
            await self.nc.subscribe(table.subject(type_).filter, cb=self._on_event)

    async def _on_event(self, msg: Msg) -> None:
        try:
            env = _decoders[msg.subject.rsplit(".", 1)[0]].decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError, KeyError):
            return
        if env.tenant != tenant_token(msg.subject):
            return  # a claim the subject does not back: the consumers dead-letter it
        if self.on_finished is not None:
            self.on_finished(env.tenant, env.job_id)
        futures = self._waiting.get((env.tenant, env.job_id))
        if not futures:
            return
        state = await self.jobs.apply(env)
        for future in futures:
            if not future.done():
                future.set_result(state)

    @contextlib.contextmanager
    def watching(self, tenant: str, job_id: str) -> Iterator[asyncio.Future[JobState]]:
        """Listen for the job's terminal event from now on. Enter it *before* publishing the job's
        request: a job that fails in milliseconds must not finish before anyone listens."""
        future: asyncio.Future[JobState] = asyncio.get_running_loop().create_future()
        key = (tenant, job_id)
        self._waiting.setdefault(key, []).append(future)
        try:
            yield future
        finally:
            futures = self._waiting.get(key, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiting.pop(key, None)

    async def result(self, tenant: str, job_id: str, future: asyncio.Future[JobState], timeout: float) -> JobState | None:
        """The finished job's state, or None if it is still running after `timeout` seconds."""
        state = await self.jobs.get(tenant, job_id)
        if state is not None and state.finished:
            return state
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None

    async def wait(self, tenant: str, job_id: str, timeout: float) -> JobState | None:
        """Wait for a job already under way (its terminal event may still come)."""
        with self.watching(tenant, job_id) as future:
            return await self.result(tenant, job_id, future, timeout)
