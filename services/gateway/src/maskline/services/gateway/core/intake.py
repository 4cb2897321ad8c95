"""Whether a new job may start now: the bus is reachable, and the tenant is under the admission limits.

Asked before anything is stored or published, so a refusal costs the platform nothing and the client
hears at once (503 / 429 with Retry-After) rather than after a publish times out.
"""

from __future__ import annotations

from dataclasses import dataclass

from maskline.services.gateway.core.errors import TooManyRequests, Unavailable
from maskline.services.gateway.operations.metrics import Metrics
from maskline.shared.bus import Bus
from maskline.shared.jobs.admission import Admission, Refused

#: What admission refuses a new job with (shared/jobs/admission.py), for the OpenAPI document.
ADMISSION_REFUSALS = TooManyRequests.coded("too_many_jobs", "rate_limited") + Unavailable.coded("overloaded")


@dataclass(frozen=True)
class Intake:
    bus: Bus
    admission: Admission
    metrics: Metrics
    """Counts each refusal by its code (`maskline_admission_refused`)."""

    def require_bus(self) -> None:
        """Refuse at once (503, Retry-After) while NATS is down, rather than after a publish times out."""
        if not self.bus.nc.is_connected:
            raise Unavailable("the message bus is not reachable now; retry shortly", code="bus_unavailable")

    async def admit(self, tenant: str, job_id: str, cost: int = 1) -> None:
        """Admit a new job of `tenant` costing `cost` inferences now, or answer 429 / 503 with Retry-After (admission.py)."""
        try:
            await self.admission.admit(tenant, job_id, cost)
        except Refused as exc:
            raise self._refusal(tenant, exc) from exc

    async def check_admission(self, tenant: str) -> None:
        """Answer 429 / 503 now if a job of `tenant` would be refused (takes nothing)."""
        try:
            await self.admission.check(tenant)
        except Refused as exc:
            raise self._refusal(tenant, exc) from exc

    def finished(self, tenant: str, job_id: str) -> None:
        """A job admitted here that did not start after all gives its place back."""
        self.admission.finished(tenant, job_id)

    def _refusal(self, tenant: str, refused: Refused) -> TooManyRequests | Unavailable:
        self.metrics.refused.labels(refused.code).inc()
        error = TooManyRequests if refused.status == 429 else Unavailable
        return error(refused.reason, code=refused.code, retry_after_s=refused.retry_after_s)
