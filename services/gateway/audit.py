"""`/v1/audit`: a job's audit trail, in order, with each record's hash checked."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import Parameter

from maskline.contracts.audit_v1 import AuditRecord, chain_hash
from maskline.services.gateway.context import GatewayContext
from maskline.services.gateway.segmentations import owned_job
from maskline.shared.audit_trail import job_trail


class AuditTrail(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    intact: bool
    """Every record's hash matches its content."""
    records: list[AuditRecord]


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get(summary="Audit trail of a job")
    async def trail(self, ctx: GatewayContext, tenant: str, job: Annotated[str, Parameter(query="job")]) -> AuditTrail:
        await owned_job(ctx, tenant, job)
        records = await job_trail(ctx.runtime.bus.js, job)
        return AuditTrail(job_id=job, intact=all(chain_hash(r) == r.hash for r in records), records=records)
