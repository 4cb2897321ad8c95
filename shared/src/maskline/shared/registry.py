"""The model registry: a JetStream key-value bucket of `ModelVersion` records, per owner.

Keys are `<owner>.<name>.<version>`; beside them two kinds of pointers, each one key read on the
hot path instead of a listing:

- `latest` / `latest-<precision>`: the owner's newest version (any precision, or one precision).
  Only the owner's own unpinned requests follow it.
- `released` / `released-<precision>`: what every *other* tenant's unpinned request gets. It is
  set once, when the first version of a precision is registered, and moves only when the owner
  releases another version: a new version never changes what another tenant runs.
"""

from __future__ import annotations

import builtins
import contextlib
import re
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.contracts.model_v1 import ModelVersion
from maskline.shared.kv import compare_and_set, entries, open_bucket

BUCKET = "models"
LATEST = "latest"
RELEASED = "released"
_decoder = msgspec.json.Decoder(ModelVersion)


class ModelNotFound(LookupError):
    """No such model, or no such version of it (or none the caller may see)."""


class VersionExists(ValueError):
    """A version is immutable once registered."""


_OWNER = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def valid(owner: str, name: str) -> bool:
    """Both can be tokens of a key (names from a URL can be anything)."""
    return bool(_OWNER.match(owner) and _NAME.match(name))


def _key(owner: str, name: str, suffix: str | int) -> str:
    if not valid(owner, name):
        raise ModelNotFound(f"there is no model {owner}/{name} (not a valid owner and model name)")
    return f"{owner}.{name}.{suffix}"


def _pointer(kind: str, precision: str | None) -> str:
    return kind if precision is None else f"{kind}-{precision}"


class ModelRegistry:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: Any = None

    async def open(self) -> None:
        self._kv = await open_bucket(self._js, BUCKET)

    async def add(self, model: ModelVersion) -> None:
        try:
            await self._kv.create(_key(model.owner, model.name, model.version), msgspec.json.encode(model))
        except KeyWrongLastSequenceError as exc:
            raise VersionExists(f"{model.owner}/{model.name} version {model.version} is already registered") from exc
        await self._advance(model)

    async def _advance(self, model: ModelVersion) -> None:
        """`latest*` pointers move to the newest version (compare-and-set; never back); `released*`
        pointers are only created here, never moved."""
        for precision in (None, model.precision):
            await self._set(model, _pointer(LATEST, precision), lambda cur: cur is None or cur.version < model.version)
            await self._set(model, _pointer(RELEASED, precision), lambda cur: cur is None)

    async def _set(self, model: ModelVersion, pointer: str, when: Any) -> None:
        await compare_and_set(
            self._kv, _key(model.owner, model.name, pointer), _decoder, lambda current: model if when(current) else None
        )

    async def release(self, model: ModelVersion) -> None:
        """Make `model` what other tenants' unpinned requests get (its precision, and overall)."""
        for precision in (None, model.precision):
            await self._kv.put(_key(model.owner, model.name, _pointer(RELEASED, precision)), msgspec.json.encode(model))

    async def list(self, owner: str | None = None) -> builtins.list[ModelVersion]:
        models = [
            _decoder.decode(value)
            for key, value in (await entries(self._js, BUCKET)).items()
            if key.rsplit(".", 1)[-1].isdigit() and (owner is None or key.split(".", 1)[0] == owner)
        ]
        return sorted(models, key=lambda m: (m.owner, m.name, m.version))

    async def exists(self, owner: str, name: str) -> bool:
        return valid(owner, name) and await self._read(_key(owner, name, LATEST)) is not None

    async def _read(self, key: str) -> ModelVersion | None:
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            return None
        return _decoder.decode(entry.value) if entry.value else None

    async def get(self, owner: str, name: str, version: int) -> ModelVersion:
        model = await self._read(_key(owner, name, version))
        if model is None:
            raise ModelNotFound(f"model {owner}/{name} version {version} is not registered")
        return model

    async def pointed(self, owner: str, name: str, kind: str, precision: str | None = None) -> ModelVersion:
        """The version a `latest` or `released` pointer names (for one precision, or any)."""
        model = await self._read(_key(owner, name, _pointer(kind, precision)))
        if model is None:
            which = f" in {precision}" if precision else ""
            raise ModelNotFound(f"model {owner}/{name}{which} is not registered")
        return model

    async def remove(self, model: ModelVersion) -> None:
        """Delete one version's record (callers make sure no pointer names it)."""
        await self._kv.delete(_key(model.owner, model.name, model.version))

    async def pointers(self, model: ModelVersion) -> builtins.list[str]:
        """The pointers that resolve to this version (what requests without a version get)."""
        names: builtins.list[str] = []
        for kind in (LATEST, RELEASED):
            for precision in (None, model.precision):
                current = await self._read(_key(model.owner, model.name, _pointer(kind, precision)))
                if current is not None and current.version == model.version:
                    names.append(_pointer(kind, precision))
        return names

    async def find(self, owner: str, name: str, version: int) -> ModelVersion | None:
        return await self._read(_key(owner, name, version))

    async def reserve(self, owner: str, name: str, job_id: str) -> int:
        """The version number a job registers under: chosen once (create-only), the same on every
        attempt of the job — so a job registers exactly one version however often it runs."""
        key = _key(owner, name, f"job-{job_id}")
        for _ in range(20):
            try:
                entry = await self._kv.get(key)
                return int(entry.value)
            except (KeyNotFoundError, NotFoundError):
                pass
            try:
                number = await self.next_version(owner, name)
                await self._kv.create(key, str(number).encode())
                return number
            except KeyWrongLastSequenceError:
                continue  # another attempt of the job reserved first: read its number
        raise VersionExists(f"could not reserve a version of {owner}/{name} for job {job_id}")

    async def move_reservation(self, owner: str, name: str, job_id: str, taken: int) -> None:
        """The reserved number was taken by another registration before this job used it: take the next."""
        key = _key(owner, name, f"job-{job_id}")
        entry = await self._kv.get(key)
        if int(entry.value) == taken:
            with contextlib.suppress(KeyWrongLastSequenceError):  # someone moved it already
                await self._kv.update(key, str(await self.next_version(owner, name)).encode(), last=entry.revision)

    async def next_version(self, owner: str, name: str) -> int:
        current = await self._read(_key(owner, name, LATEST))
        return 1 if current is None else current.version + 1
