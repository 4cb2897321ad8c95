"""Aliases that roll themselves back (against a real nats-server's buckets): each rule fires on its
evidence, once, audited; never within the cooldown, never again while tripped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest

from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope
from maskline.contracts.model_v1 import Alias, AliasChanged, ModelVersion, RollbackGuard, ShadowCompared
from maskline.services.weights.alias_guards import AliasGuards, armed
from maskline.shared.bus import Bus
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.models.shadows import ShadowTallies
from maskline.shared.operations import quality
from maskline.shared.operations.quality import Outcome, QualityStore
from maskline.shared.storage import make_ref
from tests.shared.operations.test_quality import in_domain, out_of_domain

pytestmark = pytest.mark.nats
NOW = datetime.now(UTC)


async def guards_of(bus: Bus) -> AliasGuards:
    return AliasGuards(
        await ModelRegistry.opened(bus.js), await QualityStore.opened(bus.js), await ShadowTallies.opened(bus.js), bus
    )


async def guarded_alias(
    guards: AliasGuards, owner: str, guard: RollbackGuard, changed: datetime, shadow: int | None = None
) -> Alias:
    alias = Alias(
        owner=owner, model="m", name="stable", version=2, history=(1,), shadow=shadow, changed=changed, by=owner, guard=guard
    )
    written = await guards.registry.change_alias(owner, "m", "stable", lambda _: alias)
    assert written == alias
    return alias


def jobs(owner: str, values: list[dict[str, float]], failed: int = 0) -> list[Outcome]:
    at = NOW - timedelta(minutes=5)
    done = [Outcome(tenant=owner, owner=owner, model="m", version=2, at=at, latency_ms=50.0, values=v) for v in values]
    return done + [Outcome(tenant=owner, owner=owner, model="m", version=2, at=at, failed_code="bad_prediction")] * failed


async def changes(bus: Bus, owner: str) -> list[AliasChanged]:
    """The alias's audited changes on the bus (the MODEL stream)."""
    from maskline.shared.bus import read_stream

    messages = await read_stream(bus.js, "MODEL", f"{model_v1.ALIAS_CHANGED}.{owner}")
    return [msgspec.json.decode(m.data, type=Envelope[AliasChanged]).data for m in messages]


async def test_a_drifting_version_is_rolled_back_once_and_the_change_audited(bus: Bus) -> None:
    guards, owner = await guards_of(bus), f"g{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(1)
    await guards.quality.set_reference(owner, owner, "m", 2, quality.reference_of(in_domain(rng) for _ in range(40)), NOW)
    await guarded_alias(guards, owner, RollbackGuard(on_drift=True, cooldown_s=600), NOW - timedelta(hours=2))
    await guards.quality.add(jobs(owner, [in_domain(rng) for _ in range(40)]))
    assert await guards.check() == []  # in domain: nothing to do

    await guards.quality.add(jobs(owner, [out_of_domain(rng) for _ in range(60)]))
    [rolled] = await guards.check()
    assert (rolled.version, rolled.history, rolled.by) == (1, (), "guard")
    assert rolled.guard_tripped is not None and "drifted from its evaluation reference" in rolled.guard_tripped
    assert not armed(rolled, NOW + timedelta(days=1))  # tripped: disarmed until the owner acts
    assert await guards.check() == []
    [change] = await changes(bus, owner)
    assert change.action == "rolled-back" and change.previous == 2 and change.rule.startswith("automatic rollback: v2 drifted")


async def test_the_error_rate_rule_waits_for_enough_jobs_and_the_cooldown(bus: Bus) -> None:
    guards, owner = await guards_of(bus), f"g{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(2)
    guard = RollbackGuard(max_error_rate=0.2, min_jobs=20, cooldown_s=3600)
    await guarded_alias(guards, owner, guard, NOW - timedelta(minutes=10))  # promoted 10 minutes ago
    await guards.quality.add(jobs(owner, [in_domain(rng) for _ in range(6)], failed=4))
    assert await guards.check() == []  # 4 of 10 failed, but too few jobs, and inside the cooldown
    await guards.quality.add(jobs(owner, [in_domain(rng) for _ in range(6)], failed=4))
    assert await guards.check() == []  # enough jobs now (20, 40% failed): still inside the cooldown
    [rolled] = await guards.check(at=NOW + timedelta(minutes=55))
    assert rolled.version == 1 and "failed 8 of 20 jobs (40.0% > 20.0%)" in str(rolled.guard_tripped)


async def test_a_shadow_that_disagrees_on_the_owners_requests_rolls_the_alias_back(bus: Bus) -> None:
    guards, owner = await guards_of(bus), f"g{uuid.uuid4().hex[:8]}"
    guard = RollbackGuard(min_shadow_agreement=0.9, min_jobs=3, cooldown_s=60)
    await guarded_alias(guards, owner, guard, NOW - timedelta(hours=1), shadow=1)

    def compared(agreement: float) -> ShadowCompared:
        return ShadowCompared(
            owner=owner,
            model="m",
            alias="stable",
            served=2,
            shadow=1,
            pixel_agreement=agreement,
            miou=0.5,
            served_ms=1,
            shadow_ms=1,
        )

    for _ in range(5):  # a grantee's requests the versions disagree on: not the owner's evidence
        await guards.shadows.add(compared(0.1), "someone-else")
    assert await guards.check() == []
    for agreement in (0.95, 0.7, 0.6):
        await guards.shadows.add(compared(agreement), owner)
    [rolled] = await guards.check()
    assert rolled.version == 1 and "shadow v1 agreed with v2 on 0.7500 of pixels over 3 requests" in str(rolled.guard_tripped)
    assert rolled.shadow is None  # the shadow was the version it went back to: no longer a shadow of itself


async def test_a_model_named_like_an_alias_does_not_stop_the_guards(bus: Bus) -> None:
    guards, owner = await guards_of(bus), f"g{uuid.uuid4().hex[:8]}"
    weights = make_ref(f"models/{owner}/alias-x/1/model.pt", b"x", "x")
    await guards.registry.add(
        ModelVersion(name="alias-x", owner=owner, version=1, labels=("a",), input_size=(8, 8), weights=weights)
    )
    await guards.quality.add(jobs(owner, [], failed=40))
    await guarded_alias(guards, owner, RollbackGuard(max_error_rate=0.5, min_jobs=10, cooldown_s=60), NOW - timedelta(hours=1))
    rolled = await guards.check()
    assert [(a.owner, a.version) for a in rolled] == [(owner, 1)]
