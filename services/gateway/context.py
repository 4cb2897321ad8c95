"""What request handlers need, built once at start and handed to controllers by dependency injection."""

from __future__ import annotations

from dataclasses import dataclass, field

from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.telemetry import Metrics
from maskline.services.gateway.waiters import CompletionWaiters
from maskline.shared.jobs import JobStore
from maskline.shared.registry import ModelRegistry
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
