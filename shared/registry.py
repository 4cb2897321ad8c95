"""The model registry: a JetStream key-value bucket of `ModelVersion` records, `<name>.<version>`."""

from __future__ import annotations

import builtins
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.contracts.model_v1 import ModelVersion
from maskline.shared.kv import compare_and_set, entries, open_bucket

BUCKET = "models"
LATEST = "latest"
_decoder = msgspec.json.Decoder(ModelVersion)


class ModelNotFound(LookupError):
    """No such model, or no such version of it."""


class VersionExists(ValueError):
    """A version is immutable once registered."""


class ModelRegistry:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: Any = None

    async def open(self, replicas: int = 1) -> None:
        self._kv = await open_bucket(self._js, BUCKET, replicas=replicas)

    async def add(self, model: ModelVersion) -> None:
        try:
            await self._kv.create(f"{model.name}.{model.version}", msgspec.json.encode(model))
        except KeyWrongLastSequenceError as exc:
            raise VersionExists(f"{model.name} version {model.version} is already registered") from exc
        await self._advance_latest(model)

    async def _advance_latest(self, model: ModelVersion) -> None:
        """Point `<name>.latest` (any precision) and `<name>.latest-<precision>` at the newest
        version (compare-and-set; never moves back).

        Resolving "latest" is then one key read on the hot path, instead of listing every key.
        """
        for pointer in (LATEST, f"{LATEST}-{model.precision}"):
            await compare_and_set(
                self._kv,
                f"{model.name}.{pointer}",
                _decoder,
                lambda current: model if current is None or current.version < model.version else None,
            )

    async def list(self, name: str | None = None) -> list[ModelVersion]:
        models = [
            _decoder.decode(value)
            for key, value in (await entries(self._js, BUCKET)).items()
            if key.rsplit(".", 1)[-1].isdigit() and (name is None or key.rsplit(".", 1)[0] == name)
        ]
        return sorted(models, key=lambda m: (m.name, m.version))

    async def get(self, name: str, version: int | None = None, precision: str | None = None) -> ModelVersion:
        """A pinned version; or the newest of `precision`; or the newest of any precision."""
        key = str(version) if version is not None else LATEST if precision is None else f"{LATEST}-{precision}"
        try:
            entry = await self._kv.get(f"{name}.{key}")
        except (KeyNotFoundError, NotFoundError) as exc:
            which = f" version {version}" if version is not None else f" in {precision}" if precision else ""
            raise ModelNotFound(f"model {name!r}{which} is not registered") from exc
        model = _decoder.decode(entry.value)
        if precision is not None and model.precision != precision:
            raise ModelNotFound(f"model {name!r} version {model.version} is {model.precision}, not {precision}")
        return model

    async def default(self, name: str) -> ModelVersion:
        """What a request naming no version gets: the newest float version, else the newest of any."""
        try:
            return await self.get(name, precision="fp32")
        except ModelNotFound:
            return await self.get(name)

    async def remove(self, model: ModelVersion) -> None:
        """Delete one version's record (callers make sure no pointer names it)."""
        await self._kv.delete(f"{model.name}.{model.version}")

    async def pointers(self, model: ModelVersion) -> builtins.list[str]:
        """The `latest*` pointers that resolve to this version (what requests without a version get)."""
        names: builtins.list[str] = []
        for pointer in (LATEST, f"{LATEST}-{model.precision}"):
            try:
                current = await self.get(model.name, precision=None if pointer == LATEST else model.precision)
            except ModelNotFound:
                continue
            if current.version == model.version:
                names.append(pointer)
        return names

    async def next_version(self, name: str) -> int:
        try:
            return (await self.get(name)).version + 1
        except ModelNotFound:
            return 1
