"""The model registry: a JetStream key-value bucket of `ModelVersion` records, per owner.

Keys are `<owner>.<name>.<version>`; beside them, each one key read on the hot path instead of a
listing:

- `latest`: the owner's newest version. It numbers the next version and tells whether a model
  exists; no request runs it.
- `alias-<alias>`: an `Alias` record — what requests naming the alias run (`stable` when they name
  no version and no alias), with its canary split and shadow. The first float version of a model
  creates `stable`, and the first of each precision `stable-<precision>`; after that only the owner
  moves an alias (promote, roll back), so a new version never changes what anyone runs by itself.
"""

from __future__ import annotations

import builtins
import contextlib
import re
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.contracts.envelope import now
from maskline.contracts.model_v1 import STABLE, Alias, ModelVersion, precision_alias
from maskline.shared.kv import BucketStore, compare_and_set, entries

BUCKET = "models"
LATEST = "latest"
ALIAS = "alias-"
#: Before aliases (contracts 1.6), `released[-<precision>]` pointers held what `stable` holds now.
LEGACY_RELEASED = "released"
_decoder = msgspec.json.Decoder(ModelVersion)
_alias_decoder = msgspec.json.Decoder(Alias)


class ModelNotFound(LookupError):
    """No such model, or no such version of it (or none the caller may see)."""


class VersionExists(ValueError):
    """A version is immutable once registered."""


_OWNER = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def valid(owner: str, name: str) -> bool:
    """Both can be tokens of a key (names from a URL can be anything)."""
    return bool(_OWNER.match(owner) and _NAME.match(name))


def _key(owner: str, name: str, suffix: str | int) -> str:
    if not valid(owner, name):
        raise ModelNotFound(f"there is no model {owner}/{name} (not a valid owner and model name)")
    return f"{owner}.{name}.{suffix}"


def _create_only(alias: Alias) -> Callable[[Alias | None], Alias | None]:
    return lambda current: alias if current is None else None


class ModelRegistry(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)

    async def add(self, model: ModelVersion) -> None:
        try:
            await self.kv.create(_key(model.owner, model.name, model.version), msgspec.json.encode(model))
        except KeyWrongLastSequenceError as exc:
            raise VersionExists(f"{model.owner}/{model.name} version {model.version} is already registered") from exc
        await self._advance(model)

    async def _advance(self, model: ModelVersion) -> None:
        """`latest` moves to the newest version (compare-and-set; never back); `stable` and
        `stable-<precision>` are only created here, never moved."""
        await compare_and_set(
            self.kv,
            _key(model.owner, model.name, LATEST),
            _decoder,
            lambda cur: model if cur is None or cur.version < model.version else None,
        )
        # `stable` itself only from a float version: a quantization into a new name must not become
        # what requests naming no precision run (they ask for the float model, as they always did).
        firsts = (
            (STABLE, precision_alias(STABLE, model.precision))
            if model.precision == "fp32"
            else (precision_alias(STABLE, model.precision),)
        )
        for alias in firsts:
            first = Alias(owner=model.owner, model=model.name, name=alias, version=model.version, changed=now(), by=model.owner)
            await self.change_alias(model.owner, model.name, alias, _create_only(first))

    async def alias(self, owner: str, name: str, alias: str) -> Alias | None:
        if not valid(owner, name) or not _ALIAS.match(alias):
            return None  # a name from a URL that no alias can have
        try:
            entry = await self.kv.get(_key(owner, name, ALIAS + alias))
        except (KeyNotFoundError, NotFoundError):
            return await self._legacy_alias(owner, name, alias)
        return _alias_decoder.decode(entry.value) if entry.value else None

    async def _legacy_alias(self, owner: str, name: str, alias: str) -> Alias | None:
        """A registry written before aliases: its `released` pointers stand for `stable`."""
        if alias != STABLE and not alias.startswith(STABLE + "-"):
            return None
        model = await self._read(_key(owner, name, LEGACY_RELEASED + alias[len(STABLE) :]))
        return None if model is None else Alias(owner=owner, model=name, name=alias, version=model.version)

    async def aliases(self, owner: str, name: str) -> builtins.list[Alias]:
        prefix = f"{owner}.{name}.{ALIAS}"
        found = [_alias_decoder.decode(v) for k, v in (await entries(self.js, BUCKET)).items() if k.startswith(prefix) and v]
        return sorted(found, key=lambda a: a.name)

    async def change_alias(
        self, owner: str, name: str, alias: str, change: Callable[[Alias | None], Alias | None]
    ) -> Alias | None:
        """Compare-and-set one alias: `change(current) -> new | None` (None leaves it)."""
        return await compare_and_set(self.kv, _key(owner, name, ALIAS + alias), _alias_decoder, change)

    async def delete_alias(self, owner: str, name: str, alias: str) -> None:
        await self.kv.delete(_key(owner, name, ALIAS + alias))

    async def list(self, owner: str | None = None) -> builtins.list[ModelVersion]:
        models = [
            _decoder.decode(value)
            for key, value in (await entries(self.js, BUCKET)).items()
            if key.rsplit(".", 1)[-1].isdigit() and (owner is None or key.split(".", 1)[0] == owner)
        ]
        return sorted(models, key=lambda m: (m.owner, m.name, m.version))

    async def exists(self, owner: str, name: str) -> bool:
        return valid(owner, name) and await self._read(_key(owner, name, LATEST)) is not None

    async def _read(self, key: str) -> ModelVersion | None:
        try:
            entry = await self.kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            return None
        return _decoder.decode(entry.value) if entry.value else None

    async def get(self, owner: str, name: str, version: int) -> ModelVersion:
        model = await self._read(_key(owner, name, version))
        if model is None:
            raise ModelNotFound(f"model {owner}/{name} version {version} is not registered")
        return model

    async def latest(self, owner: str, name: str) -> ModelVersion:
        model = await self._read(_key(owner, name, LATEST))
        if model is None:
            raise ModelNotFound(f"model {owner}/{name} is not registered")
        return model

    async def remove(self, model: ModelVersion) -> None:
        """Delete one version's record (callers make sure no pointer names it)."""
        await self.kv.delete(_key(model.owner, model.name, model.version))

    async def serving(self, model: ModelVersion) -> builtins.list[str]:
        """The aliases that run this version (as their version, canary or shadow)."""
        return [a.name for a in await self.aliases(model.owner, model.name) if model.version in (a.version, a.canary, a.shadow)]

    async def find(self, owner: str, name: str, version: int) -> ModelVersion | None:
        return await self._read(_key(owner, name, version))

    async def reserve(self, owner: str, name: str, job_id: str) -> int:
        """The version number a job registers under: chosen once (create-only), the same on every
        attempt of the job — so a job registers exactly one version however often it runs."""
        key = _key(owner, name, f"job-{job_id}")
        for _ in range(20):
            try:
                entry = await self.kv.get(key)
                return int(entry.value)
            except (KeyNotFoundError, NotFoundError):
                pass
            try:
                number = await self.next_version(owner, name)
                await self.kv.create(key, str(number).encode())
                return number
            except KeyWrongLastSequenceError:
                continue  # another attempt of the job reserved first: read its number
        raise VersionExists(f"could not reserve a version of {owner}/{name} for job {job_id}")

    async def move_reservation(self, owner: str, name: str, job_id: str, taken: int) -> None:
        """The reserved number was taken by another registration before this job used it: take the next."""
        key = _key(owner, name, f"job-{job_id}")
        entry = await self.kv.get(key)
        if int(entry.value) == taken:
            with contextlib.suppress(KeyWrongLastSequenceError):  # someone moved it already
                await self.kv.update(key, str(await self.next_version(owner, name)).encode(), last=entry.revision)

    async def next_version(self, owner: str, name: str) -> int:
        current = await self._read(_key(owner, name, LATEST))
        return 1 if current is None else current.version + 1
