"""`/v1/audit`: a job's audit trail (each record's hash and signature checked), the audit public
key, and — for operators — a verification of the whole trail."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, MediaType, Response, get
from litestar.params import Parameter

from maskline.contracts.audit_v1 import AuditRecord, Checkpoint, ObservedEvent
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.auth import Caller
from maskline.services.gateway.core.errors import Forbidden, NotFound
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.job_routes import owned_job
from maskline.shared.bus import Bus
from maskline.shared.jobs.state import JobStore
from maskline.shared.tenants.trails import job_trail, load_public_key, observed, record_intact, verify_stream


class AuditTrail(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    intact: bool
    """Every record's hash matches its content and is signed by the audit key."""
    records: list[AuditRecord]
    """The signed records, in chain order (one per job's events observed together, since 1.9)."""
    events: list[ObservedEvent]
    """Every event the records hold, once each, in the order recorded."""


class TrailVerdict(msgspec.Struct, frozen=True, kw_only=True):
    intact: bool
    records: int
    events: int
    checkpoints: int
    first_break: str | None
    head: Checkpoint | None
    """The newest signed checkpoint: keep it, and a later purge or rewrite will show."""


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get(summary="Audit trail of one of your jobs", opt={ANSWERS: Answers(refusals=NotFound.coded())})
    async def trail(
        self,
        job_store: JobStore,
        bus: Bus,
        settings: GatewaySettings,
        tenant: str,
        job: Annotated[str, Parameter(query="job")],
    ) -> AuditTrail:
        await owned_job(job_store, tenant, job)
        records = await job_trail(bus.js, tenant, job)
        key = load_public_key(settings.audit_public_key_file)
        return AuditTrail(
            job_id=job, intact=all(record_intact(r, key) for r in records), records=records, events=observed(records)
        )

    @get(
        "/public-key",
        summary="The audit service's Ed25519 public key (hex): verify records and checkpoints with it",
        media_type=MediaType.TEXT,
        opt={ANSWERS: Answers(refusals=NotFound.coded())},
    )
    async def public_key(self, settings: GatewaySettings, tenant: str) -> Response[str]:
        try:
            with open(settings.audit_public_key_file) as handle:
                return Response(handle.read().strip(), media_type=MediaType.TEXT)
        except OSError as exc:
            raise NotFound("the audit public key is not configured here") from exc

    @get(
        "/verify",
        summary="Verify the whole trail: every hash, signature, link and sequence (operators)",
        opt={ANSWERS: Answers(refusals=Forbidden.coded())},
    )
    async def verify(self, bus: Bus, settings: GatewaySettings, caller: Caller) -> TrailVerdict:
        if not caller.operator:
            raise Forbidden("only operators verify the whole trail (it holds every tenant's records)")
        verdict = await verify_stream(bus.js, load_public_key(settings.audit_public_key_file))
        return TrailVerdict(
            intact=verdict.intact,
            records=verdict.records,
            events=verdict.events,
            checkpoints=verdict.checkpoints,
            first_break=verdict.first_break,
            head=verdict.head,
        )
