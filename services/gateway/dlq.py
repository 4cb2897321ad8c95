"""`/v1/dlq`: dead letters (a tenant sees its own; operators see all) and re-drive."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, post

from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.errors import NotFound
from maskline.shared import dlq
from maskline.shared.dlq import Letter, LetterNotFound


def _visible(ctx: GatewayContext, tenant: str, letter: Letter) -> bool:
    return tenant in ctx.settings.operator_tenants() or letter.tenant == tenant


class DeadLetterController(Controller):
    path = "/v1/dlq"
    tags = ["operations"]

    @get(summary="Dead letters, newest first")
    async def list_letters(self, ctx: GatewayContext, tenant: str, limit: int = 200) -> list[Letter]:
        return [
            letter for letter in await dlq.letters(ctx.runtime.bus.js, min(max(limit, 1), 1000)) if _visible(ctx, tenant, letter)
        ]

    @post("/{seq:int}/redrive", status_code=200, summary="Republish a dead letter to its subject (after fixing its cause)")
    async def redrive(self, ctx: GatewayContext, tenant: str, seq: int) -> dict[str, Any]:
        try:
            letter, _ = await dlq.get(ctx.runtime.bus.js, seq)
        except LetterNotFound as exc:
            raise NotFound(str(exc)) from exc
        if not _visible(ctx, tenant, letter):
            raise NotFound(f"no dead letter {seq}")
        return await dlq.redrive(ctx.runtime.bus.js, seq)
