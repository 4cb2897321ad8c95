"""The model registry: a JetStream key-value bucket of `ModelVersion` records, `<name>.<version>`."""

from __future__ import annotations

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
        """Point `<name>.latest` at the newest version (compare-and-set; never moves back).

        Resolving "latest" is then one key read on the hot path, instead of listing every key.
        """
        await compare_and_set(
            self._kv,
            f"{model.name}.{LATEST}",
            _decoder,
            lambda current: model if current is None or current.version < model.version else None,
        )

    async def list(self, name: str | None = None) -> list[ModelVersion]:
        models = [
            _decoder.decode(value)
            for key, value in (await entries(self._js, BUCKET)).items()
            if not key.endswith(f".{LATEST}") and (name is None or key.rsplit(".", 1)[0] == name)
        ]
        return sorted(models, key=lambda m: (m.name, m.version))

    async def get(self, name: str, version: int | None = None) -> ModelVersion:
        try:
            entry = await self._kv.get(f"{name}.{LATEST if version is None else version}")
        except (KeyNotFoundError, NotFoundError) as exc:
            which = "" if version is None else f" version {version}"
            raise ModelNotFound(f"model {name!r}{which} is not registered") from exc
        return _decoder.decode(entry.value)

    async def next_version(self, name: str) -> int:
        try:
            return (await self.get(name)).version + 1
        except ModelNotFound:
            return 1
