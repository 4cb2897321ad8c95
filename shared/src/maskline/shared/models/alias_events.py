"""An alias's changes as audited events: one `model.v1.alias.changed` per change, all of one alias
on one audit trail (its job id), whoever made it (the owner through the gateway, or the alias's
rollback guard in the weights service)."""

from __future__ import annotations

import uuid

import msgspec

from maskline.contracts import model_v1
from maskline.contracts.envelope import job_event, new_trace_id, now
from maskline.contracts.model_v1 import Alias, AliasAction, RollbackGuard
from maskline.shared.bus import Bus


def alias_trail_id(owner: str, model: str, alias: str) -> str:
    """The job id of an alias's events: one audit trail per (owner, model, alias)."""
    return f"alias-{owner}-{model}-{alias}"[:128]


async def publish_alias_change(bus: Bus, source: str, alias: Alias, action: AliasAction, previous: int | None, rule: str) -> None:
    await bus.publish(
        job_event(  # every change is its own event: the id tells them apart
            model_v1.ALIAS_CHANGED,
            source,
            model_v1.AliasChanged(alias=alias, action=action, previous=previous, rule=rule),
            tenant=alias.owner,
            job_id=alias_trail_id(alias.owner, alias.model, alias.name),
            trace_id=new_trace_id(),
            parts=(action, uuid.uuid4().hex[:12]),
        )
    )


def rolled_back(alias: Alias, by: str, guard_tripped: str | None = None) -> Alias:
    """The alias returned to the version it ran before (it must have one): without a canary, and
    without a shadow that is that version. `guard_tripped`: its guard did it, and why."""
    back = alias.history[-1]
    return msgspec.structs.replace(
        alias,
        version=back,
        history=alias.history[:-1],
        shadow=None if alias.shadow == back else alias.shadow,
        canary=None,
        canary_percent=0.0,
        changed=now(),
        by=by,
        guard_tripped=guard_tripped if guard_tripped is not None else alias.guard_tripped,
    )


def guard_words(guard: RollbackGuard) -> str:
    """A guard's rules in words (the audit record of setting it)."""
    rules = ["on drift"] if guard.on_drift else []
    if guard.max_error_rate is not None:
        rules.append(f"error rate over {guard.max_error_rate}")
    if guard.min_shadow_agreement is not None:
        rules.append(f"shadow agreement under {guard.min_shadow_agreement}")
    return f"{', '.join(rules) or 'no rule'} (over {guard.min_jobs} jobs; cooldown {guard.cooldown_s:g} s)"
