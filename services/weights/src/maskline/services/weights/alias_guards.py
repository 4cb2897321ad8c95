"""Aliases that roll themselves back: every `check_every_s` each armed guard (`Alias.guard`) is
checked against the owner's own jobs on the version the alias serves — its drift flag and error
rate from the `quality` bucket, its shadow's agreement from the `shadows` bucket. A guard whose
rule holds returns the alias to the version it ran before, in one compare-and-set that also
disarms it (`guard_tripped` says when and why), and publishes the change as an audited
`model.v1.alias.changed` of action `rolled-back`, `by` `guard`.

Runs in weights, which writes the registry already. With several weights instances each checks;
the compare-and-set lets one of them roll back, and the others find the guard tripped."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import msgspec
import structlog

from maskline.contracts.envelope import now
from maskline.contracts.model_v1 import Alias
from maskline.shared.bus import Bus
from maskline.shared.kv import entries
from maskline.shared.models.alias_events import publish_alias_change, rolled_back
from maskline.shared.models.registry import ALIAS, BUCKET, ModelRegistry
from maskline.shared.models.shadows import ShadowTallies
from maskline.shared.operations.quality import Hour, QualityStore, hours_back

NAME = "weights"
GUARD = "guard"
#: Hours of the owner's jobs the drift rule compares with the reference, at most (fewer when the
#: alias changed more recently: only the served version's own time counts).
DRIFT_WINDOW_HOURS = 24
#: The features of the model's answers (not of its inputs): what the drift rule acts on.
ANSWER_FEATURES = frozenset({"mean_probability", "uncertain_fraction"})
log = structlog.get_logger("weights.guards")
_alias = msgspec.json.Decoder(Alias)


def armed(alias: Alias, at: datetime) -> bool:
    """A guard that may fire now: set, not tripped, past its cooldown, with a version to return to."""
    guard = alias.guard
    if guard is None or alias.guard_tripped is not None or not alias.history:
        return False
    return alias.changed is None or (at - alias.changed).total_seconds() >= guard.cooldown_s


def hours_since(changed: datetime | None, at: datetime) -> int:
    """The clock hours from the one the alias last changed in to the current one (the summaries'
    hours), within DRIFT_WINDOW_HOURS: the jobs of the changed hour before the change count too."""
    if changed is None:
        return DRIFT_WINDOW_HOURS
    hour = timedelta(hours=1)
    first, last = changed.replace(minute=0, second=0, microsecond=0), at.replace(minute=0, second=0, microsecond=0)
    return max(1, min(DRIFT_WINDOW_HOURS, (last - first) // hour + 1))


class AliasGuards:
    def __init__(self, registry: ModelRegistry, quality: QualityStore, shadows: ShadowTallies, bus: Bus) -> None:
        self.registry, self.quality, self.shadows, self.bus = registry, quality, shadows, bus

    async def guarded(self) -> list[Alias]:
        """Every alias with a guard (one read of the registry bucket: `<owner>.<model>.alias-<name>`)."""
        found = []
        for key, value in (await entries(self.registry.js, BUCKET)).items():
            parts = key.split(".")
            if not value or len(parts) != 3 or not parts[2].startswith(ALIAS):
                continue  # a version, `latest`: a model may be named `alias-x`, its keys are not aliases
            try:
                alias = _alias.decode(value)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.warning("guards.undecodable_alias", key=key, error=str(exc))
                continue
            if alias.guard is not None:
                found.append(alias)
        return found

    async def reason(self, alias: Alias, at: datetime) -> str | None:
        """Why the guard should fire now, in words with the numbers; None while no rule holds."""
        guard = alias.guard
        assert guard is not None
        owner, model, version = alias.owner, alias.model, alias.version
        hours = hours_since(alias.changed, at)
        if guard.on_drift:
            drift = await self.quality.drift(owner, owner, model, version, at, hours)
            # the model's answers only: inputs that changed (brightness, size) are not the version's
            # doing, and a rollback would not change them
            answers = [f for f in drift.features if f in ANSWER_FEATURES] if drift is not None and drift.flagged else []
            if drift is not None and answers:
                shifted = ", ".join(f"{f} PSI {drift.psi[f]}" for f in answers)
                return f"v{version} drifted from its evaluation reference over {drift.jobs} jobs ({shifted})"
        if guard.max_error_rate is not None:
            total = Hour()
            for _, hour in await self.quality.hours(owner, owner, model, version, hours_back(at, hours)):
                total.merge(hour)
            rate = total.failed / total.jobs if total.jobs else 0.0
            if total.jobs >= guard.min_jobs and rate > guard.max_error_rate:
                return f"v{version} failed {total.failed} of {total.jobs} jobs ({rate:.1%} > {guard.max_error_rate:.1%})"
        if guard.min_shadow_agreement is not None and alias.shadow is not None:
            tally = await self.shadows.own(owner, model, alias.name, alias.shadow, version)  # the owner's jobs only
            if tally is not None and tally.jobs >= guard.min_jobs:
                agreement = tally.pixel_agreement_sum / tally.jobs
                if agreement < guard.min_shadow_agreement:
                    return (
                        f"shadow v{alias.shadow} agreed with v{version} on {agreement:.4f} of pixels "
                        f"over {tally.jobs} requests (< {guard.min_shadow_agreement})"
                    )
        return None

    async def check(self, at: datetime | None = None) -> list[Alias]:
        """One pass over the guarded aliases; the ones rolled back."""
        at = at or datetime.now(UTC)
        rolled = []
        for alias in await self.guarded():
            if not armed(alias, at):
                continue
            try:  # one alias's trouble never stops the others' guards
                why = await self.reason(alias, at)
                if why is not None and (done := await self._roll_back(alias, why, at)) is not None:
                    rolled.append(done)
            except Exception as exc:
                log.warning("guards.alias_check_failed", owner=alias.owner, model=alias.model, alias=alias.name, error=str(exc))
        return rolled

    async def _roll_back(self, seen: Alias, why: str, at: datetime) -> Alias | None:
        tripped = f"{now().isoformat()}: {why}"

        def step(cur: Alias | None) -> Alias | None:
            # only the alias the rule was checked on: moved, re-guarded or tripped meanwhile, leave it
            if cur is None or cur.version != seen.version or cur.guard != seen.guard or not armed(cur, at):
                return None
            return rolled_back(cur, by=GUARD, guard_tripped=tripped)

        changed = await self.registry.change_alias(seen.owner, seen.model, seen.name, step)
        if changed is None or changed.guard_tripped != tripped:
            return None
        await publish_alias_change(self.bus, NAME, changed, "rolled-back", seen.version, f"automatic rollback: {why}")
        log.warning("alias.rolled_back", owner=seen.owner, model=seen.model, alias=seen.name, to=changed.version, reason=why)
        return changed

    async def run(self, stopping: asyncio.Event, every_s: float) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every_s)
            try:
                await self.check()
            except Exception as exc:  # the next pass tries again
                log.warning("guards.check_failed", error=str(exc))
