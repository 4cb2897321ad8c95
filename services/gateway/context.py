"""What request handlers need, built once at start and handed to controllers by dependency injection."""

from __future__ import annotations

from dataclasses import dataclass, field

from maskline.contracts.model_v1 import ModelVersion
from maskline.services.gateway.errors import NotFound
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.telemetry import Metrics
from maskline.services.gateway.waiters import CompletionWaiters
from maskline.shared.jobs import JobStore
from maskline.shared.registry import ModelNotFound, ModelRegistry
from maskline.shared.runtime import Runtime


@dataclass
class GatewayContext:
    runtime: Runtime
    settings: GatewaySettings
    jobs: JobStore
    registry: ModelRegistry
    waiters: CompletionWaiters
    tenants: dict[str, str]
    metrics: Metrics = field(default_factory=Metrics)

    async def model(self, name: str, version: int) -> ModelVersion:
        """A registered version, or the gateway's 404 naming what is missing."""
        try:
            return await self.registry.get(name, version)
        except ModelNotFound as exc:
            raise NotFound(str(exc)) from exc
