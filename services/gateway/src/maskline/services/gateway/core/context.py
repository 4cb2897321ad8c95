"""The parts request handlers need, built once at start (service.py).

No controller receives the context whole: `create_app` (app.py) registers each part as a litestar
dependency of its own (`store`, `job_store`, `registry`, `waiters`, `settings`, ...), and a handler
asks for a part by naming it as a parameter — it receives only what it uses, and its signature says
what that is. The context's behaviour lives with the parts: `ModelLookup` (model_lookup.py) finds
the versions a tenant may use, `Intake` (intake.py) says whether a new job may start now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from maskline.services.gateway.accounts.passwords import Passwords
from maskline.services.gateway.core.auth_limits import FailedKeys
from maskline.services.gateway.operations.metrics import Metrics
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.shared.jobs.admission import Admission
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.fence import Fences
from maskline.shared.jobs.idempotency import IdempotencyKeys
from maskline.shared.jobs.state import JobStore
from maskline.shared.models.access import Grants
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.models.shadows import ShadowTallies
from maskline.shared.operations.quality import QualityStore
from maskline.shared.service.runtime import Runtime
from maskline.shared.tenants.accounts import Accounts, PendingSignIns, Sessions
from maskline.shared.tenants.webhooks import WebhookTargets


@dataclass
class GatewayContext:
    runtime: Runtime
    settings: GatewaySettings
    jobs: JobStore
    registry: ModelRegistry
    grants: Grants
    shadows: ShadowTallies
    quality: QualityStore
    fences: Fences
    cancellations: Cancellations
    idempotency: IdempotencyKeys
    waiters: CompletionWaiters
    tenants: dict[str, str]
    admission: Admission
    webhooks: WebhookTargets
    accounts: Accounts
    sessions: Sessions
    passwords: Passwords
    sign_ins: PendingSignIns
    metrics: Metrics = field(default_factory=Metrics)
    failed_keys: FailedKeys = field(default_factory=FailedKeys)
    failed_sign_ins: FailedKeys = field(default_factory=FailedKeys)
    """Failed sign-ins per client address (apart from unknown API keys)."""
    sign_in_starts: FailedKeys = field(default_factory=FailedKeys)
    """Single sign-ons started per client address (each holds a row until it expires)."""
