"""Aliases and rollout: point `stable` (or any name) at a version, promote and roll back, split traffic
with a canary, run a shadow. Owner only; each change is compare-and-set on the alias record and
published as an audited `model.v1.alias.changed` event (one audit trail per alias)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from litestar import Controller, delete, get, post, put
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from maskline.contracts.audit_v1 import AuditRecord
from maskline.contracts.envelope import now
from maskline.contracts.http_v1 import AliasView, GuardBody, PromoteBody, RolloutBody, ShadowView
from maskline.contracts.model_v1 import STABLE, Alias, AliasAction, AliasName, ModelVersion
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import MEMBERS_IF, ROLE, Caller
from maskline.services.gateway.core.errors import Conflict, NotFound, Unprocessable
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.data.datasets import NAME_REFUSALS
from maskline.services.gateway.data.datasets import prefix as dataset_prefix
from maskline.services.gateway.models.evaluations import evaluations_of
from maskline.services.gateway.models.sharing import OwnerParam
from maskline.shared.bus import Bus
from maskline.shared.models.alias_events import alias_trail_id, guard_words, publish_alias_change, rolled_back
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.shadows import ShadowTallies
from maskline.shared.tenants.trails import job_trail

#: The last versions an alias pointed to that a rollback can return to.
HISTORY = 20
_NO_ALIAS = NotFound.coded("alias_not_found")
_BAD_ALIAS = Unprocessable.coded()  # `_name`
#: Changing an alias is the owner's, or a member's where the tenant's owners allowed it.
OWNER_OR_ALLOWED = {ROLE: "owner", MEMBERS_IF: "aliases"}
#: What `AliasChanges.promote` refuses with (the promotion rule's datasets are named by the owner).
PROMOTION_REFUSALS = Conflict.coded("alias_unchanged", "promotion_refused") + NAME_REFUSALS


def _name(alias: str) -> str:
    try:
        return msgspec.convert(alias, AliasName)
    except msgspec.ValidationError as exc:
        raise Unprocessable(f"invalid alias {alias!r}: a lowercase letter, then letters, digits, - and _") from exc


class AliasController(Controller):
    path = "/v1/models/{name:str}/aliases"
    tags = ["rollout"]

    @get(summary="A model's aliases (yours, the platform's, or a model shared with you: `owner`)")
    async def list_aliases(
        self,
        models: ModelLookup,
        registry: ModelRegistry,
        shadows: ShadowTallies,
        tenant: str,
        name: str,
        owner: OwnerParam = None,
    ) -> list[AliasView]:
        owner = await _readable(models, tenant, name, owner)
        return [await _view(shadows, _as_seen_by(tenant, a)) for a in await registry.aliases(owner, name)]

    @get(
        "/{alias:str}",
        summary="One alias, with its shadow's agreement with the served masks",
        opt={ANSWERS: Answers(refusals=_NO_ALIAS)},
    )
    async def get_alias(
        self,
        models: ModelLookup,
        registry: ModelRegistry,
        shadows: ShadowTallies,
        tenant: str,
        name: str,
        alias: str,
        owner: OwnerParam = None,
    ) -> AliasView:
        owner = await _readable(models, tenant, name, owner)
        return await _view(shadows, _as_seen_by(tenant, await _existing(registry, owner, name, alias)))

    @put(
        "/{alias:str}",
        status_code=HTTP_200_OK,
        summary="Point an alias at one of your versions: create or promote (owner only)",
        opt={**OWNER_OR_ALLOWED, ANSWERS: Answers(refusals=PROMOTION_REFUSALS + _BAD_ALIAS)},
    )
    async def promote(self, alias_changes: AliasChanges, tenant: str, name: str, alias: str, data: PromoteBody) -> AliasView:
        return await alias_changes.promote(tenant, name, _name(alias), data)

    @post(
        "/{alias:str}/rollback",
        status_code=HTTP_200_OK,
        summary="Return an alias to the version it ran before (owner only)",
        opt={**OWNER_OR_ALLOWED, ANSWERS: Answers(refusals=_NO_ALIAS + Conflict.coded("nothing_to_roll_back") + _BAD_ALIAS)},
    )
    async def rollback(self, alias_changes: AliasChanges, tenant: str, name: str, alias: str) -> AliasView:
        def step(cur: Alias | None) -> Alias:
            if cur is None:
                raise NotFound(f"you have no alias {alias} of model {name}", code="alias_not_found")
            if not cur.history:
                raise Conflict(f"alias {alias} has no earlier version to roll back to", code="nothing_to_roll_back")
            return rolled_back(cur, by=alias_changes.by)

        return await alias_changes.change(tenant, name, _name(alias), step, action="rolled-back")

    @put(
        "/{alias:str}/rollout",
        status_code=HTTP_200_OK,
        summary="Split an alias's traffic with a canary version, and/or run a shadow version (owner only)",
        opt={**OWNER_OR_ALLOWED, ANSWERS: Answers(refusals=_NO_ALIAS + _BAD_ALIAS)},
    )
    async def rollout(
        self, models: ModelLookup, alias_changes: AliasChanges, tenant: str, name: str, alias: str, data: RolloutBody
    ) -> AliasView:
        for version in (data.canary, data.shadow):
            if version is not None:
                await models.owned_model(tenant, name, version)
        if (data.canary is None) != (data.canary_percent == 0):
            raise Unprocessable("give a canary version together with a canary_percent above 0 (or neither)")

        def step(cur: Alias | None) -> Alias:
            if cur is None:
                raise NotFound(f"you have no alias {alias} of model {name}", code="alias_not_found")
            if cur.version in (data.canary, data.shadow):
                raise Unprocessable(f"version {cur.version} is what alias {alias} runs: a canary or shadow must be another")
            return msgspec.structs.replace(
                cur,
                canary=data.canary,
                canary_percent=data.canary_percent,
                shadow=data.shadow,
                changed=now(),
                by=alias_changes.by,
            )

        return await alias_changes.change(tenant, name, _name(alias), step, action="rollout")

    @put(
        "/{alias:str}/guard",
        status_code=HTTP_200_OK,
        summary="Let an alias roll itself back on drift, errors or shadow disagreement (owner only)",
        opt={**OWNER_OR_ALLOWED, ANSWERS: Answers(refusals=_NO_ALIAS + _BAD_ALIAS)},
    )
    async def guard(self, alias_changes: AliasChanges, tenant: str, name: str, alias: str, data: GuardBody) -> AliasView:
        guard = data.guard()
        if not (guard.on_drift or guard.max_error_rate is not None or guard.min_shadow_agreement is not None):
            raise Unprocessable("a guard needs a rule: on_drift, max_error_rate or min_shadow_agreement")

        def step(cur: Alias | None) -> Alias:
            if cur is None:
                raise NotFound(f"you have no alias {alias} of model {name}", code="alias_not_found")
            return msgspec.structs.replace(cur, guard=guard, guard_tripped=None, changed=now(), by=alias_changes.by)

        return await alias_changes.change(
            tenant, name, _name(alias), step, action="rollout", rule=f"guard set: {guard_words(guard)}"
        )

    @delete(
        "/{alias:str}/guard",
        status_code=HTTP_200_OK,
        summary="Stop an alias rolling itself back (owner only)",
        opt={**OWNER_OR_ALLOWED, ANSWERS: Answers(refusals=_NO_ALIAS + _BAD_ALIAS)},
    )
    async def unguard(self, alias_changes: AliasChanges, tenant: str, name: str, alias: str) -> AliasView:
        def step(cur: Alias | None) -> Alias:
            if cur is None:
                raise NotFound(f"you have no alias {alias} of model {name}", code="alias_not_found")
            return msgspec.structs.replace(cur, guard=None, guard_tripped=None, changed=now(), by=alias_changes.by)

        return await alias_changes.change(tenant, name, _name(alias), step, action="rollout", rule="guard removed")

    @delete(
        "/{alias:str}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete an alias (not `stable`; owner only)",
        opt={**OWNER_OR_ALLOWED, ANSWERS: Answers(refusals=_NO_ALIAS + Conflict.coded("alias_required"))},
    )
    async def remove(self, registry: ModelRegistry, bus: Bus, tenant: str, name: str, alias: str) -> None:
        if alias == STABLE:
            raise Conflict("stable is what requests naming no alias run: promote another version instead", code="alias_required")
        current = await _existing(registry, tenant, name, alias)
        await registry.delete_alias(tenant, name, alias)
        await _publish(bus, current, "deleted", current.version, "")

    @get(
        "/{alias:str}/trail",
        summary="The audited changes of one alias (owner only)",
        opt={ANSWERS: Answers(refusals=_NO_ALIAS)},
    )
    async def trail(self, registry: ModelRegistry, bus: Bus, tenant: str, name: str, alias: str) -> list[AuditRecord]:
        await _existing(registry, tenant, name, alias)
        return await job_trail(bus.js, tenant, alias_trail_id(tenant, name, alias))


@dataclass(frozen=True)
class AliasChanges:
    """Change an alias: compare-and-set on its record, checked against the promotion rule, published
    as an audited event. What a handler asks for as `alias_changes`, built by litestar from the parts
    of the same names (app.py)."""

    models: ModelLookup
    registry: ModelRegistry
    shadows: ShadowTallies
    store: Store
    bus: Bus
    caller: Caller

    @property
    def by(self) -> str:
        """Who changes the alias, as its record and audit trail say: the person (their id), or the
        tenant for its API keys."""
        return self.caller.account.id if self.caller.account is not None else self.caller.tenant

    async def promote(self, tenant: str, name: str, alias: str, data: PromoteBody) -> AliasView:
        """Create the alias at `data.version`, or move it there (its old version kept for a rollback)."""
        model = await self.models.owned_model(tenant, name, data.version)
        current = await self.registry.alias(tenant, name, alias)
        rule = await self._check_rule(alias, current, model, data)

        def step(cur: Alias | None) -> Alias:
            if cur is None:
                return Alias(owner=tenant, model=name, name=alias, version=model.version, changed=now(), by=self.by)
            if cur.version == model.version:
                raise Conflict(f"alias {alias} already runs version {model.version}", code="alias_unchanged")
            return msgspec.structs.replace(
                cur,
                version=model.version,
                history=(*cur.history, cur.version)[-HISTORY:],
                canary=None if cur.canary == model.version else cur.canary,  # the canary became the alias
                canary_percent=0.0 if cur.canary == model.version else cur.canary_percent,
                shadow=None if cur.shadow == model.version else cur.shadow,
                changed=now(),
                by=self.by,
                guard_tripped=None,  # a new version: its guard is armed again
            )

        return await self.change(tenant, name, alias, step, rule=rule)

    async def change(
        self,
        owner: str,
        name: str,
        alias: str,
        step: Callable[[Alias | None], Alias],
        *,
        action: AliasAction | None = None,
        rule: str = "",
    ) -> AliasView:
        before = await self.registry.alias(owner, name, alias)
        try:
            changed = await self.registry.change_alias(owner, name, alias, step)
        except ModelNotFound as exc:  # not a name any model of yours has
            raise NotFound(str(exc), code="model_not_found") from exc
        assert changed is not None
        previous = before.version if before else None
        await _publish(self.bus, changed, action or ("created" if before is None else "promoted"), previous, rule)
        return await _view(self.shadows, changed)

    async def _check_rule(self, alias: str, current: Alias | None, candidate: ModelVersion, data: PromoteBody) -> str:
        """The promotion rule's verdict in words, or 409 `promotion_refused` naming the numbers."""
        checks = []
        if data.require_metric is not None and current is not None:
            metric = data.require_metric
            serving = await self.registry.get(current.owner, current.model, current.version)
            new, old = candidate.metrics.get(metric), serving.metrics.get(metric)
            verdict = f"{metric}: version {candidate.version} {new} vs version {serving.version} {old}"
            if new is None or (old is not None and new < old):
                raise Conflict(f"promotion refused: {verdict} (require_metric)", code="promotion_refused")
            checks.append(verdict)
        if data.require_evaluation is not None and current is not None:
            checks.append(await self._check_evaluations(current, candidate, data.require_evaluation))
        if data.require_shadow_agreement is not None:
            tally = await self.shadows.get(candidate.owner, candidate.name, alias, candidate.version)
            jobs = tally.jobs if tally else 0
            mean = tally.pixel_agreement_sum / tally.jobs if tally and tally.jobs else 0.0
            verdict = f"shadow agreement of version {candidate.version}: {mean:.4f} over {jobs} requests"
            if jobs < data.min_shadow_jobs or mean < data.require_shadow_agreement:
                raise Conflict(
                    f"promotion refused: {verdict}; the rule asks for {data.require_shadow_agreement} "
                    f"over at least {data.min_shadow_jobs}",
                    code="promotion_refused",
                )
            checks.append(verdict)
        return "; ".join(checks)

    async def _check_evaluations(self, current: Alias, candidate: ModelVersion, dataset: str) -> str:
        """Candidate's mIoU on the dataset is at least the serving version's, on the same content."""
        prefix = dataset_prefix(candidate.owner, dataset)
        serving = await self.registry.get(current.owner, current.model, current.version)
        new, old = [
            next((e for e in await evaluations_of(self.store, candidate.owner, m) if e.dataset == prefix), None)
            for m in (candidate, serving)
        ]
        if new is None or old is None:
            missing = ", ".join(f"v{m.version}" for m, e in ((candidate, new), (serving, old)) if e is None)
            raise Conflict(
                f"promotion refused: no evaluation of {missing} on {dataset} (require_evaluation)", code="promotion_refused"
            )
        verdict = f"mIoU on {dataset}: version {candidate.version} {new.miou:.4f} vs version {serving.version} {old.miou:.4f}"
        if new.dataset_sha256 != old.dataset_sha256:
            raise Conflict(
                f"promotion refused: {dataset} changed between the two evaluations; evaluate both again",
                code="promotion_refused",
            )
        if new.miou < old.miou:
            raise Conflict(f"promotion refused: {verdict} (require_evaluation)", code="promotion_refused")
        return verdict


async def _publish(bus: Bus, alias: Alias, action: AliasAction, previous: int | None, rule: str) -> None:
    await publish_alias_change(bus, "gateway", alias, action, previous, rule)


async def _readable(models: ModelLookup, tenant: str, name: str, owner: str | None) -> str:
    model = await models.model(tenant, name, owner=owner)  # 404 unless the tenant may use the model
    return model.owner


async def _existing(registry: ModelRegistry, owner: str, name: str, alias: str) -> Alias:
    found = await registry.alias(owner, name, alias)
    if found is None:
        raise NotFound(f"model {name} has no alias {alias}", code="alias_not_found")
    return found


def _as_seen_by(tenant: str, alias: Alias) -> Alias:
    """The alias as a tenant other than its owner may see it: why its guard tripped is the owner's
    traffic (error counts, drift figures), so a grantee learns only that it did."""
    if tenant == alias.owner or alias.guard_tripped is None:
        return alias
    return msgspec.structs.replace(alias, guard_tripped="tripped")


async def _view(shadows: ShadowTallies, alias: Alias) -> AliasView:
    if alias.shadow is None:
        return AliasView(alias=alias)
    tally = await shadows.get(alias.owner, alias.model, alias.name, alias.shadow)
    if tally is None or not tally.jobs:
        return AliasView(alias=alias)
    n = tally.jobs
    return AliasView(
        alias=alias,
        shadow=ShadowView(
            version=alias.shadow,
            served=tally.served,
            jobs=n,
            pixel_agreement=round(tally.pixel_agreement_sum / n, 6),
            miou=round(tally.miou_sum / n, 6),
            min_pixel_agreement=tally.min_pixel_agreement,
            served_ms=round(tally.served_ms_sum / n, 2),
            shadow_ms=round(tally.shadow_ms_sum / n, 2),
        ),
    )
