"""Admission control: refuse work the pipeline cannot take now, quickly, instead of queueing it.

Three limits, each answered at once with 429 (per tenant) or 503 (the platform), Retry-After and a
stable code, and counted in `maskline_admission_refused_total`:

- **Backlog**: messages waiting for, or held by, the pipeline's stages (ingest, augment, infer,
  merge). Read from JetStream's consumer state at most every `BACKLOG_TTL_S`, so a refusal costs no
  bus round trip. Over `max_backlog` → 503 `overloaded`.
- **Rate**: a token bucket per tenant (`tenant_rate_per_s`, burst `tenant_burst`) → 429
  `rate_limited`.
- **Concurrency**: a tenant's jobs accepted and not yet finished (`tenant_max_jobs`) → 429
  `too_many_jobs`.

Rate and concurrency are kept per gateway replica (behind N replicas a tenant gets up to N times
the limit); the backlog is the bus's own and shared. Systems publishing straight onto the bus meet
the backlog limit in ingest, at twice the gateway's, where a request beyond it fails as `overloaded`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.js import JetStreamContext

from maskline.contracts import subjects as table

STAGES = table.BACKLOG_STAGES
BACKLOG_TTL_S = 0.5


class Refused(Exception):
    """Not admitted now: `status` 429 (this tenant's limits) or 503 (the platform's), retry after `retry_after_s`."""

    def __init__(self, status: int, code: str, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason, self.retry_after_s = status, code, reason, retry_after_s


class Sized(Protocol):
    async def size(self) -> int: ...


@dataclass
class Backlog:
    js: JetStreamContext
    stages: tuple[tuple[str, str], ...] = STAGES
    _value: int = 0
    _read_at: float = 0.0

    async def size(self) -> int:
        """Pending + in-flight messages of the stages (cached for `BACKLOG_TTL_S`)."""
        if time.monotonic() - self._read_at < BACKLOG_TTL_S:
            return self._value
        total = 0
        for stream, durable in self.stages:
            try:
                info = await self.js.consumer_info(stream, durable)
            except Exception:  # a stage not started yet has no consumer: nothing queued for it
                continue
            total += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        self._value, self._read_at = total, time.monotonic()
        return total


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is there."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate_per_s)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


@dataclass
class Admission:
    backlog: Sized
    max_backlog: int
    tenant_rate_per_s: float
    tenant_burst: float
    tenant_max_jobs: int
    overrides: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    """tenant → (rate per s, burst, max unfinished jobs), where a tenant has limits of its own."""
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    running: dict[str, set[str]] = field(default_factory=dict)
    """Per tenant: the jobs this replica accepted that have not finished yet."""

    async def admit(self, tenant: str, job_id: str) -> None:
        """Admit one job of `tenant`, or raise `Refused`. Admitted jobs count until `finished`."""
        rate, burst, max_jobs = self.overrides.get(tenant, (self.tenant_rate_per_s, self.tenant_burst, self.tenant_max_jobs))
        bucket = self.buckets.setdefault(tenant, TokenBucket(rate, burst))
        mine = self.running.setdefault(tenant, set())
        if len(mine) >= max_jobs and job_id not in mine:
            raise Refused(429, "too_many_jobs", f"tenant {tenant} has {len(mine)} unfinished jobs (limit {max_jobs})", 1.0)
        wait = bucket.take()
        if wait > 0:
            raise Refused(429, "rate_limited", f"over {rate:g} requests/s for tenant {tenant}", wait)
        size = await self.backlog.size()
        if size >= self.max_backlog:
            raise Refused(503, "overloaded", f"the pipeline holds {size} queued messages (limit {self.max_backlog})", 2.0)
        mine.add(job_id)

    def finished(self, tenant: str, job_id: str) -> None:
        self.running.get(tenant, set()).discard(job_id)

    def gauges(self) -> dict[str, Any]:
        return {"running": {t: len(j) for t, j in self.running.items() if j}}
