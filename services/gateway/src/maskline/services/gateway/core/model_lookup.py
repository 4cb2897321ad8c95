"""The model versions a request names, as the gateway answers for them: found, or 404 `model_not_found`."""

from __future__ import annotations

from dataclasses import dataclass

from maskline.contracts.model_v1 import ModelVersion
from maskline.services.gateway.core.errors import NotFound
from maskline.shared.models.access import Grants, ModelAccess
from maskline.shared.models.registry import ModelNotFound, ModelRegistry

#: What a route that asks for `models` may answer (its OpenAPI document: openapi.py).
REFUSALS = NotFound.coded("model_not_found")


@dataclass(frozen=True)
class ModelLookup:
    registry: ModelRegistry
    grants: Grants

    @property
    def access(self) -> ModelAccess:
        return ModelAccess(self.registry, self.grants)

    async def model(
        self, tenant: str, name: str, version: int | None = None, owner: str | None = None, precision: str | None = None
    ) -> ModelVersion:
        """A version `tenant` may use, or the gateway's 404 naming what is missing (another tenant's
        private model reads as missing: its existence is not disclosed)."""
        try:
            return (await self.access.target(tenant, name, owner=owner, version=version, precision=precision)).model
        except ModelNotFound as exc:
            raise NotFound(str(exc), code="model_not_found") from exc

    async def owned_model(self, tenant: str, name: str, version: int) -> ModelVersion:
        """One of the tenant's own versions (what only an owner may change or download)."""
        try:
            return await self.registry.get(tenant, name, version)
        except ModelNotFound as exc:
            raise NotFound(f"you have no model {name} version {version}", code="model_not_found") from exc
