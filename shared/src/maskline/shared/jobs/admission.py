"""Admission control: refuse work the pipeline cannot take now, quickly, instead of queueing it.

Three limits, each answered at once with 429 (per tenant) or 503 (the platform), Retry-After and a
stable code, and counted in `maskline_admission_refused_total`:

- **Backlog**: messages waiting for, or held by, the pipeline's stages (ingest, augment, infer,
  merge). Read from JetStream's consumer state in the background at most every `BACKLOG_TTL_S`,
  plus the jobs this replica admitted since that read began, so a refusal costs no bus round trip
  and a burst cannot slip past a stale reading. Over `max_backlog` → 503 `overloaded`. Jobs wait
  about `backlog / throughput`: size it as throughput x the queueing delay you accept.
- **Rate**: a token bucket per tenant (`tenant_rate_per_s`, burst `tenant_burst`) → 429
  `rate_limited`.
- **Concurrency**: a tenant's jobs accepted and not yet finished (`tenant_max_jobs`) → 429
  `too_many_jobs`.

`check` answers the same question without taking anything, so the gateway can refuse before it
reads a request's body; `admit` then takes the token and counts the job.

Rate and concurrency are kept per gateway replica (behind N replicas a tenant gets up to N times
the limit); the backlog is the bus's own and shared.

Every job meets admission again where it enters the platform's work, whoever published it: the
consumer runtime admits each command (a segmentation request in ingest, a quantization in quantize,
...) on its first delivery, at `BUS_FACTOR` times these limits so that a job the gateway admitted
is never refused there. Nothing in the envelope is trusted for it (its `source` is whatever the
publisher wrote). A command refused there fails its job with the same codes, and is not a dead
letter (nothing to re-drive: publish it again later). A TTA segmentation costs one token per
variant: what it costs Triton.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.js import JetStreamContext

from maskline.contracts import subjects as table

STAGES = table.BACKLOG_STAGES
#: Jobs published straight onto the bus meet the limits in the service that takes them, at this
#: multiple of the gateway's: a burst the gateway admitted is never refused a second time.
BUS_FACTOR = 2
#: A job not seen to end in this long (its end event missed while disconnected) stops counting.
FORGET_AFTER_S = 3600.0
BACKLOG_TTL_S = 0.5
BACKLOG_STALE_S = 2.0
BACKLOG_WAIT_S = 1.0
"""The longest a request waits for a fresh reading; past it, the stale one answers."""


class Refused(Exception):
    """Not admitted now: `status` 429 (this tenant's limits) or 503 (the platform's), retry after `retry_after_s`."""

    def __init__(self, status: int, code: str, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.retry_after_s = status, code, reason, retry_after_s


class Sized(Protocol):
    async def size(self) -> int: ...

    def admitted(self) -> None: ...


@dataclass
class Backlog:
    js: JetStreamContext
    stages: tuple[tuple[str, str], ...] = STAGES
    _value: int = 0
    _read_at: float = 0.0
    _since_read: int = 0
    """Jobs admitted here since the reading in use began (the bus may not have counted them yet)."""
    _reading: asyncio.Task[None] | None = None

    async def size(self) -> int:
        """The last reading plus what this replica admitted since. One reading runs at a time, in
        the background: under steady traffic requests never wait for the bus. A reading older than
        `BACKLOG_STALE_S` (the first request, or the first after a quiet spell) is waited for, so a
        backlog that drained while nobody asked does not refuse work."""
        age = time.monotonic() - self._read_at
        if self._reading is None and age >= BACKLOG_TTL_S:
            self._reading = asyncio.create_task(self._read())
        if age >= BACKLOG_STALE_S and self._reading is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._reading), BACKLOG_WAIT_S)
        return self._value + self._since_read

    def admitted(self) -> None:
        self._since_read += 1

    async def _read(self) -> None:
        began, counted = time.monotonic(), self._since_read
        try:
            total = 0
            wanted: dict[str, set[str]] = {}
            for stream, durable in self.stages:
                wanted.setdefault(stream, set()).add(durable)
            for stream, durables in wanted.items():
                # One request lists a stream's consumers with their state (not one per stage).
                for info in await self.js.consumers_info(stream):
                    if info.name in durables:  # a stage not started yet has no consumer: nothing queued for it
                        total += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            # Admissions during the read may or may not be in it: keep counting them (the cautious side).
            self._value, self._since_read, self._read_at = total, self._since_read - counted, began
        finally:
            self._reading = None


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, tokens: float = 1.0) -> float:
        """0.0 when `tokens` were taken, else the seconds until they are there."""
        wait = self.peek(tokens)
        if wait == 0.0:
            self.tokens -= tokens
        return wait

    def peek(self, tokens: float = 1.0) -> float:
        """0.0 when `tokens` are there, else the seconds until they are (takes nothing)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate_per_s)
        self.at = now
        return 0.0 if self.tokens >= tokens else (tokens - self.tokens) / self.rate_per_s


@dataclass
class Admission:
    backlog: Sized | None
    """The pipeline's backlog (None: this admission does not guard the segmentation pipeline)."""
    max_backlog: int
    tenant_rate_per_s: float
    tenant_burst: float
    tenant_max_jobs: int
    overrides: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    """tenant → (rate per s, burst, max unfinished jobs), where a tenant has limits of its own."""
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    running: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per tenant: the jobs admitted here that have not finished yet, with when they were admitted."""

    @classmethod
    def for_bus(cls, settings: Any, backlog: Sized | None) -> Admission:
        """The limits a service applies to the jobs it takes off the bus: `BUS_FACTOR` times the gateway's."""
        return cls(
            backlog=backlog,
            max_backlog=BUS_FACTOR * settings.max_backlog,
            tenant_rate_per_s=BUS_FACTOR * settings.tenant_rate_per_s,
            tenant_burst=BUS_FACTOR * settings.tenant_burst,
            tenant_max_jobs=BUS_FACTOR * settings.tenant_max_jobs,
            overrides={t: (BUS_FACTOR * r, BUS_FACTOR * b, BUS_FACTOR * j) for t, (r, b, j) in settings.limits_of().items()},
        )

    async def check(self, tenant: str, job_id: str = "", cost: int = 1) -> None:
        """Raise `Refused` if a job of `tenant` would be refused now; takes nothing."""
        await self._judge(tenant, job_id, cost, take=False)

    async def admit(self, tenant: str, job_id: str, cost: int = 1) -> None:
        """Admit one job of `tenant` costing `cost` inferences, or raise `Refused`. Admitted jobs
        count until `finished`; admitting a job that already counts takes nothing more."""
        if job_id in self.running.get(tenant, {}):
            return
        await self._judge(tenant, job_id, cost, take=True)
        self.running[tenant][job_id] = time.monotonic()
        if self.backlog is not None:
            for _ in range(cost):
                self.backlog.admitted()

    async def _judge(self, tenant: str, job_id: str, cost: int, *, take: bool) -> None:
        rate, burst, max_jobs = self.overrides.get(tenant, (self.tenant_rate_per_s, self.tenant_burst, self.tenant_max_jobs))
        bucket = self.buckets.setdefault(tenant, TokenBucket(rate, burst))
        mine = self._forget_old(tenant)
        if len(mine) >= max_jobs and job_id not in mine:
            reason = f"tenant {tenant} has {len(mine)} unfinished jobs (limit {max_jobs})"
            raise Refused(429, code="too_many_jobs", reason=reason, retry_after_s=1.0)
        if self.backlog is not None:
            size = await self.backlog.size()
            if size >= self.max_backlog:
                reason = f"the pipeline holds {size} queued messages (limit {self.max_backlog})"
                raise Refused(503, code="overloaded", reason=reason, retry_after_s=2.0)
        # A job costs a token per inference, but never more than a full bucket: it must stay admissible.
        tokens = min(float(cost), burst)
        wait = bucket.take(tokens) if take else bucket.peek(tokens)
        if wait > 0:
            per = "inferences" if cost > 1 else "requests"
            reason = f"over {rate:g} {per}/s for tenant {tenant} (this job costs {cost})"
            raise Refused(429, code="rate_limited", reason=reason, retry_after_s=wait)

    def _forget_old(self, tenant: str) -> dict[str, float]:
        mine = self.running.setdefault(tenant, {})
        horizon = time.monotonic() - FORGET_AFTER_S
        for job in [j for j, at in mine.items() if at < horizon]:
            del mine[job]
        return mine

    def finished(self, tenant: str, job_id: str) -> None:
        self.running.get(tenant, {}).pop(job_id, None)

    def unfinished(self) -> list[tuple[str, str]]:
        """Every (tenant, job) admitted here that has not finished yet."""
        return [(tenant, job) for tenant, jobs in self.running.items() for job in jobs]

    def gauges(self) -> dict[str, Any]:
        return {"running": {t: len(j) for t, j in self.running.items() if j}}
