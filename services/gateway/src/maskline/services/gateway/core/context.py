"""What request handlers need, built once at start and handed to controllers by dependency injection."""

from __future__ import annotations

from dataclasses import dataclass, field

from maskline.contracts.model_v1 import ModelVersion
from maskline.services.gateway.core.auth_limits import FailedKeys
from maskline.services.gateway.core.errors import NotFound, TooManyRequests, Unavailable
from maskline.services.gateway.operations.metrics import Metrics
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.shared.jobs.admission import Admission, Refused
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.fence import Fences
from maskline.shared.jobs.idempotency import IdempotencyKeys
from maskline.shared.jobs.state import JobStore
from maskline.shared.models.access import Grants, ModelAccess
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.shadows import ShadowTallies
from maskline.shared.service.runtime import Runtime
from maskline.shared.tenants.webhooks import WebhookTargets


@dataclass
class GatewayContext:
    runtime: Runtime
    settings: GatewaySettings
    jobs: JobStore
    registry: ModelRegistry
    grants: Grants
    shadows: ShadowTallies
    fences: Fences
    cancellations: Cancellations
    idempotency: IdempotencyKeys
    waiters: CompletionWaiters
    tenants: dict[str, str]
    admission: Admission
    webhooks: WebhookTargets
    metrics: Metrics = field(default_factory=Metrics)
    failed_keys: FailedKeys = field(default_factory=FailedKeys)

    @property
    def access(self) -> ModelAccess:
        return ModelAccess(self.registry, self.grants)

    def require_bus(self) -> None:
        """Refuse at once (503, Retry-After) while NATS is down, rather than after a publish times out."""
        if not self.runtime.bus.nc.is_connected:
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

    def _refusal(self, tenant: str, refused: Refused) -> TooManyRequests | Unavailable:
        self.metrics.refused.labels(refused.code).inc()
        error = TooManyRequests if refused.status == 429 else Unavailable
        return error(refused.reason, code=refused.code, retry_after_s=refused.retry_after_s)

    def is_operator(self, tenant: str) -> bool:
        return tenant in self.settings.operator_tenants()

    async def model(
        self, tenant: str, name: str, version: int | None = None, owner: str | None = None, precision: str | None = None
    ) -> ModelVersion:
        """A version `tenant` may use, or the gateway's 404 naming what is missing (another tenant's
        private model reads as missing: its existence is not disclosed)."""
        try:
            return (await self.access.target(tenant, name, owner=owner, version=version, precision=precision)).model
        except ModelNotFound as exc:
            raise NotFound(str(exc), code="model_not_found") from exc

    async def owned_model(self, tenant: str, name: str, version: int) -> ModelVersion:
        """One of the tenant's own versions (what only an owner may change or download)."""
        try:
            return await self.registry.get(tenant, name, version)
        except ModelNotFound as exc:
            raise NotFound(f"you have no model {name} version {version}", code="model_not_found") from exc
