"""Let a request wait for its job to finish without polling: a watch on the job-state bucket
resolves per-job futures when a job's state turns final.

The answer is the state the projection wrote, the same one a later GET returns; nothing is folded
a second time here. One watch per gateway replica: a push consumer on the bucket's stream that
delivers only updates made after it started (not the bucket's history), without acknowledgements.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from maskline.shared.jobs.state import BUCKET, JobState, JobStore

log = structlog.get_logger("waiters")
_decoder = msgspec.json.Decoder(JobState)
#: A watch whose gateway died is removed by the server after this long without interest.
INACTIVE_S = 60.0
#: How often the watch is checked: a restarted nats-server has forgotten it (it is in memory).
CHECK_EVERY_S = 2.0


L = TypeVar("L")


@contextlib.contextmanager
def _listening(listeners: dict[tuple[str, str], list[L]], key: tuple[str, str], listener: L) -> Iterator[None]:
    """`listener` among a job's listeners while the block runs (the job's entry goes with the last)."""
    listeners.setdefault(key, []).append(listener)
    try:
        yield
    finally:
        remaining = listeners.get(key, [])
        if listener in remaining:
            remaining.remove(listener)
        if not remaining:
            listeners.pop(key, None)


class CompletionWaiters:
    def __init__(
        self,
        js: JetStreamContext,
        jobs: JobStore,
        on_finished: Callable[[str, str], None] | None = None,
        on_update: Callable[[JobState], None] | None = None,
        unfinished: Callable[[], Iterable[tuple[str, str]]] = tuple,
    ) -> None:
        self.js = js
        self.jobs = jobs
        self.on_finished = on_finished
        """Told of every job that finishes (admission control counts a tenant's unfinished jobs)."""
        self.on_update = on_update
        """Told of every write of any job's state (the metrics)."""
        self.unfinished = unfinished
        """(tenant, job) pairs whose end `on_finished` must hear of, even if the watch missed it."""
        self._sub: Any = None
        self._waiting: dict[tuple[str, str], list[asyncio.Future[JobState]]] = {}
        self._following: dict[tuple[str, str], list[asyncio.Queue[JobState]]] = {}

    async def start(self) -> None:
        config = ConsumerConfig(
            name=f"waiters-{uuid.uuid4().hex[:12]}",
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.NEW,
            inactive_threshold=INACTIVE_S,
            mem_storage=True,
        )
        self._sub = await self.js.subscribe(
            f"$KV.{BUCKET}.>", stream=f"KV_{BUCKET}", cb=self._on_state, manual_ack=True, config=config
        )

    async def keep_watching(self, stopping: asyncio.Event) -> None:
        """Start the watch again when the server lost it (a restarted nats-server), then read the
        state of every job someone waits for, so an end that happened meanwhile is not missed."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), CHECK_EVERY_S)
            try:
                await self._sub.consumer_info()
                continue
            except NotFoundError:
                log.warning("waiters.watch_lost")
            except Exception:
                continue  # the bus is away: check again later
            try:
                with contextlib.suppress(Exception):
                    await self._sub.unsubscribe()
                await self.start()
                await self._catch_up()
            except Exception as exc:
                log.warning("waiters.rewatch_failed", error=str(exc))

    async def _catch_up(self) -> None:
        keys = set(self._waiting) | set(self.unfinished())
        for tenant, job_id in keys:
            state = await self.jobs.get(tenant, job_id)
            if state is not None and state.finished:
                self._finished(state)

    async def _on_state(self, msg: Msg) -> None:
        if not msg.data:
            return  # a delete or an expiry marker
        try:
            state = _decoder.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("waiters.undecodable_state", subject=msg.subject, error=str(exc))
            return
        if self.on_update is not None:
            self.on_update(state)
        for queue in self._following.get((state.tenant, state.job_id), []):
            queue.put_nowait(state)
        if state.finished:
            self._finished(state)

    def _finished(self, state: JobState) -> None:
        if self.on_finished is not None:
            self.on_finished(state.tenant, state.job_id)
        for future in list(self._waiting.get((state.tenant, state.job_id), [])):
            if not future.done():
                future.set_result(state)

    @contextlib.contextmanager
    def watching(self, tenant: str, job_id: str) -> Iterator[asyncio.Future[JobState]]:
        """Listen for the job's final state from now on. Enter it *before* publishing the job's
        request: a job that fails in milliseconds must not finish before anyone listens."""
        future: asyncio.Future[JobState] = asyncio.get_running_loop().create_future()
        with _listening(self._waiting, (tenant, job_id), future):
            yield future

    @contextlib.contextmanager
    def following(self, tenant: str, job_id: str) -> Iterator[asyncio.Queue[JobState]]:
        """Every state the job's projection writes from now on, in order (a progress stream)."""
        queue: asyncio.Queue[JobState] = asyncio.Queue()
        with _listening(self._following, (tenant, job_id), queue):
            yield queue

    async def result(
        self, tenant: str, job_id: str, future: asyncio.Future[JobState], timeout: float, *, fresh: JobState | None = None
    ) -> JobState | None:
        """The finished job's state, or None if it is still running after `timeout` seconds.
        `fresh`: the state the caller has just written while it listened (nothing to read first)."""
        state = fresh if fresh is not None else await self.jobs.get(tenant, job_id)
        if state is not None and state.finished:
            return state
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            # an update the watch missed (a reconnect) still counts: read the state once more
            state = await self.jobs.get(tenant, job_id)
            return state if state is not None and state.finished else None

    async def wait(self, tenant: str, job_id: str, timeout: float) -> JobState | None:
        """Wait for a job already under way (its final state may still come)."""
        with self.watching(tenant, job_id) as future:
            return await self.result(tenant, job_id, future, timeout)
