"""Quality over time over HTTP: a version's hourly summaries of your jobs and its drift against
your latest evaluation of it, and the overview of every version your jobs used. A tenant reads only
the summaries of its own jobs (the `quality` bucket's keys start with the tenant); one version's
trends only while it may still use the version (the overview lists the tenant's own figures of
every version its jobs used)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, get
from litestar.params import Parameter

from maskline.contracts.http_v1 import QualityHour, QualityOverviewRow, VersionQuality
from maskline.services.gateway.core.model_lookup import ModelLookup
from maskline.services.gateway.models.sharing import OwnerParam
from maskline.shared.operations.quality import Hour, QualityStore, hours_back, latency_quantile, series_label

#: The longest span asked at once: what the bucket keeps (30 days).
MAX_HOURS = 30 * 24

HoursParam = Annotated[int, Parameter(query="hours", ge=1, le=MAX_HOURS, description="How many hours back, this one included")]
WindowParam = Annotated[
    int, Parameter(query="window", ge=1, le=MAX_HOURS, description="Hours of live jobs compared with the reference")
]


def hour_view(start: datetime, h: Hour) -> QualityHour:
    succeeded = h.jobs - h.failed
    p90 = latency_quantile(h, 0.9)
    return QualityHour(
        start=start,
        jobs=h.jobs,
        failed=h.failed,
        out_of_domain=h.out_of_domain,
        canary=h.canary,
        latency_ms_mean=round(h.latency_ms_sum / succeeded, 2) if succeeded else None,
        latency_ms_p90=p90 if p90 is not None and p90 != float("inf") else None,
        mean_probability=h.mean("mean_probability"),
        uncertain_fraction=h.mean("uncertain_fraction"),
        brightness=h.mean("brightness"),
        megapixels=h.mean("megapixels"),
        regions_mean=round(h.regions / succeeded, 3) if succeeded else None,
        failures=h.failures,
        aliases=h.aliases,
    )


class QualityController(Controller):
    tags = ["monitoring"]

    @get(
        "/v1/models/{name:str}/{version:int}/quality",
        summary="A version on your jobs hour by hour (counts, latency, confidence, input) and its drift against your evaluation",
    )
    async def version_quality(
        self,
        models: ModelLookup,
        quality: QualityStore,
        tenant: str,
        name: str,
        version: int,
        owner: OwnerParam = None,
        hours: HoursParam = 7 * 24,
        window: WindowParam = 24,
    ) -> VersionQuality:
        model = await models.model(tenant, name, version, owner)  # 404 unless the tenant may use it
        now = datetime.now(UTC)
        found = await quality.hours(tenant, model.owner, model.name, model.version, hours_back(now, hours))
        drift = await quality.drift(tenant, model.owner, model.name, model.version, now, window)
        return VersionQuality(
            owner=model.owner,
            name=model.name,
            version=model.version,
            hours=tuple(hour_view(start, h) for start, h in found),
            drift=drift,
            metrics_label=series_label(model.owner, model.name),
        )

    @get("/v1/quality", summary="Every version your jobs used lately (or you evaluated): the last day's counts and drift")
    async def overview(self, quality: QualityStore, tenant: str, window: WindowParam = 24) -> list[QualityOverviewRow]:
        now = datetime.now(UTC)
        rows = []
        for owner, name, version in await quality.versions(tenant):
            day = Hour()
            for _, h in await quality.hours(tenant, owner, name, version, hours_back(now, 24)):
                day.merge(h)
            drift = await quality.drift(tenant, owner, name, version, now, window)
            rows.append(
                QualityOverviewRow(
                    owner=owner,
                    name=name,
                    version=version,
                    jobs_24h=day.jobs,
                    failed_24h=day.failed,
                    out_of_domain_24h=day.out_of_domain,
                    drift=drift,
                    metrics_label=series_label(owner, name),
                )
            )
        return rows
