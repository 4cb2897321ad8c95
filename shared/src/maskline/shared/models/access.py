"""Who may use which model: owners, the platform's public models, and grants between tenants.

A tenant may use its own models, the platform's public ones (owner `maskline`, read-only), and
models another tenant granted it. Sharing follows the research-data commons: the grantee asks,
the owner grants or refuses, the owner may revoke, the grantee may withdraw. Each step is a
`model.v1.access.changed` event (audited); the state lives in the `grants` bucket.

A version derived from models its owner does not own (a merge or quantization of a shared
model) lists them in `upstream`: whoever runs or derives from it needs access to each of them
too, so a revoked grant cannot be kept alive through a copy.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError

from maskline.contracts.envelope import now
from maskline.contracts.model_v1 import STABLE, AccessState, Alias, ModelVersion, VersionRef, precision_alias
from maskline.contracts.subjects import PLATFORM_TENANT
from maskline.shared.kv import BucketStore, compare_and_set, entries
from maskline.shared.models.registry import ModelNotFound, ModelRegistry, valid

BUCKET = "grants"
#: How long a service trusts a grant it looked up: a revocation takes effect within this time.
GRANT_TTL_S = 5.0


class Grant(msgspec.Struct, kw_only=True):
    owner: str
    model: str
    grantee: str
    state: AccessState
    requested: datetime | None = None
    decided: datetime | None = None
    note: str = ""


class AccessRefused(ValueError):
    """A sharing step that is not allowed from the grant's current state, or not by this tenant."""


_decoder = msgspec.json.Decoder(Grant)

#: Who may move a grant from which states to which (grantee: ask, withdraw; owner: decide, revoke).
TRANSITIONS: dict[str, tuple[str, frozenset[str | None]]] = {
    "requested": ("grantee", frozenset({None, "refused", "revoked", "withdrawn"})),
    "withdrawn": ("grantee", frozenset({"requested", "granted"})),
    "granted": ("owner", frozenset({"requested"})),
    "refused": ("owner", frozenset({"requested"})),
    "revoked": ("owner", frozenset({"granted"})),
}


def grant_key(owner: str, model: str, grantee: str) -> str:
    return f"{owner}.{model}.{grantee}"


def grant_id(owner: str, model: str, grantee: str) -> str:
    """The job id of a grant's events: one audit trail per (owner, model, grantee)."""
    return f"access-{owner}-{model}-{grantee}"[:128]


class Grants(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)
        self._cache: dict[tuple[str, str, str], tuple[float, bool]] = {}

    async def get(self, owner: str, model: str, grantee: str) -> Grant | None:
        if not valid(owner, model) or not valid(grantee, model):
            return None
        try:
            entry = await self.kv.get(grant_key(owner, model, grantee))
        except (KeyNotFoundError, NotFoundError):
            return None
        return _decoder.decode(entry.value) if entry.value else None

    async def granted(self, owner: str, model: str, grantee: str) -> bool:
        """Cached for `GRANT_TTL_S`: this is asked on every request that uses a shared model."""
        key = (owner, model, grantee)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < GRANT_TTL_S:
            return cached[1]
        grant = await self.get(owner, model, grantee)
        allowed = grant is not None and grant.state == "granted"
        self._cache[key] = (time.monotonic(), allowed)
        return allowed

    async def change(self, owner: str, model: str, grantee: str, state: AccessState, by: str, note: str = "") -> Grant:
        """Move the grant to `state` if `by` may do that from its current state."""
        if not valid(owner, model) or not valid(grantee, model):
            raise AccessRefused(f"{owner}/{model} for {grantee}: not a valid owner, model or tenant name")
        who, sources = TRANSITIONS[state]
        if by != (owner if who == "owner" else grantee):
            raise AccessRefused(f"only the {who} may set access to {state}")

        def step(current: Grant | None) -> Grant:
            if (current.state if current else None) not in sources:
                raise AccessRefused(
                    f"access of {grantee} to {owner}/{model} is {current.state if current else 'not requested'}; "
                    f"it cannot become {state}"
                )
            stamp = now()
            if current is None or state == "requested":
                return Grant(owner=owner, model=model, grantee=grantee, state=state, requested=stamp, note=note)
            return msgspec.structs.replace(current, state=state, decided=stamp, note=note or current.note)

        result = await compare_and_set(self.kv, grant_key(owner, model, grantee), _decoder, step)
        assert result is not None
        self._cache.pop((owner, model, grantee), None)
        return result

    async def involving(self, tenant: str) -> list[Grant]:
        """Grants where `tenant` is the owner or the grantee."""
        found = [_decoder.decode(v) for v in (await entries(self.js, BUCKET)).values()]
        return sorted((g for g in found if tenant in (g.owner, g.grantee)), key=lambda g: (g.owner, g.model, g.grantee))


def in_canary(job_id: str, alias: Alias) -> bool:
    """Whether this job is in the alias's canary share: a hash of the job id, so every attempt and
    every TTA variant of one job lands on the same side, and the share is even over jobs."""
    digest = hashlib.sha256(f"{alias.owner}/{alias.model}/{alias.name}/{job_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10_000 < round(alias.canary_percent * 100)


@dataclass(frozen=True)
class Target:
    """What a model reference resolves to: a pinned version, or an alias's version with its canary
    and shadow versions."""

    model: ModelVersion
    alias: Alias | None = None
    canary: ModelVersion | None = None
    shadow: ModelVersion | None = None

    def pick(self, job_id: str) -> tuple[ModelVersion, bool]:
        """The version that serves this job, and whether it is the canary."""
        if self.canary is not None and self.alias is not None and in_canary(job_id, self.alias):
            return self.canary, True
        return self.model, False


class ModelAccess:
    """Resolve the model a tenant names, and refuse what it may not use (as if it did not exist)."""

    def __init__(self, registry: ModelRegistry, grants: Grants) -> None:
        self.registry = registry
        self.grants = grants

    async def may_use(self, tenant: str, owner: str, name: str) -> bool:
        return owner in (tenant, PLATFORM_TENANT) or await self.grants.granted(owner, name, tenant)

    async def target(
        self,
        tenant: str,
        name: str,
        *,
        owner: str | None = None,
        version: int | None = None,
        precision: str | None = None,
        alias: str | None = None,
    ) -> Target:
        """What `tenant`'s reference runs (`.model`: the version itself, an alias's own, never its canary).

        Without `owner`, the tenant's own model of that name is looked at first, then the
        platform's public one. A pinned `version` is that version (checked against `precision`).
        Otherwise the alias (`stable` when none is named) decides, for everyone alike, owner
        included: with a precision, `<alias>-<precision>`, else the alias itself if its version has
        that precision. Never simply the newest version.
        """
        owners = [owner] if owner else list(dict.fromkeys([tenant, PLATFORM_TENANT]))
        if owner and not await self.may_use(tenant, owner, name):
            raise ModelNotFound(f"model {owner}/{name} is not registered, or not shared with you")
        last: ModelNotFound | None = None
        for candidate in owners:
            try:
                if version is not None:
                    target = Target(await self._pinned(candidate, name, version, precision))
                else:
                    target = await self._aliased(candidate, name, alias or STABLE, precision)
            except ModelNotFound as exc:
                last = exc
                continue
            for model in (target.model, target.canary, target.shadow):
                if model is not None:
                    await self.check_upstream(tenant, model)
            return target
        if owner and last is not None:
            raise last
        which = f" version {version}" if version is not None else f" ({alias or STABLE}{'-' + precision if precision else ''})"
        raise ModelNotFound(f"model {name!r}{which} is not registered (yours or the platform's)")

    async def _pinned(self, owner: str, name: str, version: int, precision: str | None) -> ModelVersion:
        model = await self.registry.get(owner, name, version)
        if precision is not None and model.precision != precision:
            raise ModelNotFound(f"model {owner}/{name} version {version} is {model.precision}, not {precision}")
        return model

    async def _aliased(self, owner: str, name: str, alias: str, precision: str | None) -> Target:
        found = await self.registry.alias(owner, name, precision_alias(alias, precision)) if precision else None
        found = found or await self.registry.alias(owner, name, alias)
        if found is None:
            if not await self.registry.exists(owner, name):  # the common miss (not this owner's model): one read
                raise ModelNotFound(f"there is no model {owner}/{name}")
            others = [a.name for a in await self.registry.aliases(owner, name)]
            hint = f" (its aliases: {', '.join(others)}; name one, or a precision)" if others else ""
            raise ModelNotFound(f"model {owner}/{name} has no alias {alias!r}{hint}")
        model = await self.registry.get(owner, name, found.version)
        if precision is not None and model.precision != precision:
            raise ModelNotFound(
                f"model {owner}/{name}: alias {alias!r} runs a {model.precision} version and there is no "
                f"alias {precision_alias(alias, precision)!r}"
            )
        canary = await self.registry.get(owner, name, found.canary) if found.canary and found.canary_percent > 0 else None
        shadow = await self.registry.get(owner, name, found.shadow) if found.shadow else None
        return Target(model, found, canary, shadow)

    async def ref(self, tenant: str, ref: VersionRef) -> ModelVersion:
        return (await self.target(tenant, ref.name, owner=ref.owner, version=ref.version)).model

    async def check_upstream(self, tenant: str, model: ModelVersion) -> None:
        """A derived version is only usable while every model it was derived from is."""
        for item in model.upstream:
            owner, _, name = item.partition("/")
            if not await self.may_use(tenant, owner, name):
                raise ModelNotFound(
                    f"model {model.owner}/{model.name} version {model.version} is derived from {item}, "
                    "which is not shared with you"
                )


def copyable_by(tenant: str, model: ModelVersion) -> bool:
    """Whether `tenant` may hand `model`'s weights to others (a federation's sites): the platform's
    public models, or its own versions derived from nothing but its own and public ones. A model
    another tenant shared is used, never copied: revoking the grant must end every use of it."""
    if model.owner == PLATFORM_TENANT:
        return True
    return model.owner == tenant and all(item.startswith(f"{PLATFORM_TENANT}/") for item in model.upstream)


def upstream_of(tenant: str, parents: list[ModelVersion]) -> tuple[str, ...]:
    """What a version `tenant` derives from `parents` depends on that `tenant` does not own."""
    found = {f"{p.owner}/{p.name}" for p in parents if p.owner != tenant}
    found |= {u for p in parents for u in p.upstream if not u.startswith(f"{tenant}/")}
    return tuple(sorted(found))


def lineage_of(parents: list[ModelVersion]) -> tuple[VersionRef, ...]:
    return tuple(VersionRef(p.name, p.version, p.owner) for p in parents)
