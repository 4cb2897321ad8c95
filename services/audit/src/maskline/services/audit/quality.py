"""Quality per model version, folded from the job events audit reads anyway: each finished
segmentation goes into its version's hourly summary (`shared.operations.quality`) and into the
per-version Prometheus series this instance exports; each evaluation sets its version's drift
reference. Every `drift_every_s` the versions seen lately are compared with their references.

Prometheus labels are the model (`series_label`: a tenant's model by a digest, the platform's by
name), its version and the alias a job resolved, never the tenant that sent the job or anything of
the image. The series are bounded: at most
`max_series` versions are exported, the one seen least recently dropped first."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from maskline.contracts import model_v1, seg_v1
from maskline.contracts.common_v1 import JobFailed
from maskline.contracts.envelope import Envelope
from maskline.contracts.http_v1 import Drift
from maskline.contracts.model_v1 import QUALITY_BINS
from maskline.shared.jobs.state import JobState
from maskline.shared.operations.quality import LATENCY_MS_EDGES, Outcome, QualityStore, bin_of, features, series_label

log = structlog.get_logger("audit.quality")
#: How often the reference of a version with recent jobs is written again (the bucket keeps 30 days).
KEEP_REFERENCE_EVERY_S = 24 * 3600.0


def outcome_of(env: Envelope[Any], state: JobState | None) -> Outcome | None:
    """A finished segmentation as the summaries count it; None for anything else, and for a failure
    before a model version was chosen (nothing to hold against a version)."""
    if state is None or state.kind != "segmentation":
        return None
    started = state.created
    latency = max(0.0, (env.time - started).total_seconds() * 1000)
    if env.type == seg_v1.COMPLETED and env.data.model.owner:  # (no owner: an event from before 1.3)
        d: seg_v1.SegmentationCompleted = env.data
        return Outcome(
            tenant=env.tenant,
            owner=d.model.owner,
            model=d.model.name,
            version=d.model.version,
            at=env.time,
            latency_ms=round(latency, 2),
            alias=d.model.alias,
            canary=d.model.canary,
            regions=d.regions,
            values=features(d.confidence, d.brightness, d.width, d.height),
        )
    failed_on = env.data.model or state.model if env.type == seg_v1.FAILED else None
    if failed_on is not None and failed_on.owner:
        failed: JobFailed = env.data
        m = failed_on
        return Outcome(
            tenant=env.tenant, owner=m.owner, model=m.name, version=m.version, at=env.time,
            failed_code=failed.code, alias=m.alias, canary=m.canary,
        )  # fmt: skip
    return None


@dataclass
class _Series:
    """One (model, version, alias)'s counts in this instance since it started."""

    jobs: int = 0
    failed: int = 0
    out_of_domain: int = 0
    latency_sum_s: float = 0.0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_MS_EDGES) + 1))
    regions_sum: int = 0
    values: dict[str, list[int]] = field(default_factory=lambda: {f: [0] * (len(e) + 1) for f, e in QUALITY_BINS.items()})
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(QUALITY_BINS, 0.0))


def _histogram(
    family: HistogramMetricFamily, labels: list[str], edges: tuple[float, ...], counts: list[int], total: float
) -> None:
    running, buckets = 0, []
    for edge, n in zip(edges, counts, strict=False):
        running += n
        buckets.append((repr(float(edge)), running))
    buckets.append(("+Inf", sum(counts)))
    family.add_metric(labels, buckets, total)


class VersionSeries(Collector):
    """The per-version Prometheus series (see the module's docstring)."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.series: OrderedDict[tuple[str, str, str], _Series] = OrderedDict()
        self.drift: dict[tuple[str, str], Drift] = {}

    def add(self, o: Outcome) -> None:
        key = (series_label(o.owner, o.model), str(o.version), o.alias or "")
        s = self.series.pop(key, None) or _Series()
        self.series[key] = s
        while len(self.series) > self.max_series:
            self.series.popitem(last=False)
        s.jobs += 1
        if o.failed_code is not None:
            s.failed += 1
            return
        if o.latency_ms is not None:
            s.latency_sum_s += o.latency_ms / 1000
            s.latency[bisect.bisect_left(LATENCY_MS_EDGES, o.latency_ms)] += 1
        s.regions_sum += o.regions
        for feature, value in o.values.items():
            s.values[feature][bin_of(feature, value)] += 1
            s.sums[feature] += value
        s.out_of_domain += int(o.values.get("uncertain_fraction", 0.0) > seg_v1.LOW_CONFIDENCE_ABOVE)

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version", "alias"]
        jobs = CounterMetricFamily(
            "maskline_model_jobs", "Finished segmentations per model version, by outcome", labels=[*labels, "outcome"]
        )
        ood = CounterMetricFamily(
            "maskline_model_out_of_domain_jobs",
            "Jobs with more uncertain pixels than the low-confidence rule allows",
            labels=labels,
        )
        regions = CounterMetricFamily("maskline_model_regions", "Regions found, summed over jobs", labels=labels)
        latency = HistogramMetricFamily("maskline_model_job_latency_seconds", "Job latency, request to result", labels=labels)
        values = {
            f: HistogramMetricFamily(
                f"maskline_model_{f}", f"Per job: {f.replace('_', ' ')} (model_v1.QUALITY_BINS)", labels=labels
            )
            for f in QUALITY_BINS
        }
        for (model, version, alias), s in self.series.items():
            row = [model, version, alias]
            jobs.add_metric([*row, "completed"], s.jobs - s.failed)
            jobs.add_metric([*row, "failed"], s.failed)
            ood.add_metric(row, s.out_of_domain)
            regions.add_metric(row, s.regions_sum)
            _histogram(latency, row, tuple(e / 1000 for e in LATENCY_MS_EDGES), s.latency, s.latency_sum_s)
            for f, family in values.items():
                _histogram(family, row, QUALITY_BINS[f], s.values[f], s.sums[f])
        yield from (jobs, ood, regions, latency, *values.values())
        psi = GaugeMetricFamily(
            "maskline_model_drift_psi",
            "PSI of the live window against the evaluation reference",
            labels=["model", "version", "feature"],
        )
        flagged = GaugeMetricFamily(
            "maskline_model_drift_flagged", "1 while the version's live window is flagged as drifted", labels=["model", "version"]
        )
        for (model, version), d in self.drift.items():
            for feature, value in d.psi.items():
                psi.add_metric([model, version, feature], value)
            flagged.add_metric([model, version], 1 if d.flagged else 0)
        yield from (psi, flagged)


class QualityFold:
    def __init__(self, store: QualityStore, series: VersionSeries, window_hours: int) -> None:
        self.store = store
        self.series = series
        self.window_hours = window_hours
        #: (tenant, owner, model, version) with jobs lately: whose drift the next check computes.
        self.recent: OrderedDict[tuple[str, str, str, int], None] = OrderedDict()
        #: When this instance last wrote each recent version's reference again (`keep_reference`).
        self.kept: dict[tuple[str, str, str, int], float] = {}

    async def fold(self, finished: list[tuple[Envelope[Any], JobState | None]]) -> None:
        outcomes = []
        for env, state in finished:
            if env.type == model_v1.EVALUATED:
                await self._reference(env)
            elif (o := outcome_of(env, state)) is not None:
                outcomes.append(o)
        if outcomes:
            await self.store.add(outcomes)
        for o in outcomes:
            self.series.add(o)
            key = (o.tenant, o.owner, o.model, o.version)
            self.recent.pop(key, None)
            self.recent[key] = None
            while len(self.recent) > self.series.max_series:
                self.kept.pop(self.recent.popitem(last=False)[0], None)

    async def _reference(self, env: Envelope[model_v1.Evaluated]) -> None:
        e = env.data.evaluation
        if e.reference is not None:  # the tenant's latest evaluation of the version is its reference
            owner = e.model.owner or env.tenant
            await self.store.set_reference(env.tenant, owner, e.model.name, e.model.version, e.reference, e.created)

    async def check_drift(self) -> None:
        """Each recent version's drift, per tenant; the series show the worst tenant's."""
        now = datetime.now(UTC)
        worst: dict[tuple[str, str], Drift] = {}
        for tenant, owner, model, version in list(self.recent):
            kept = self.kept.get((tenant, owner, model, version), 0.0)
            if time.monotonic() - kept > KEEP_REFERENCE_EVERY_S:  # in use: its reference outlives the age limit
                await self.store.keep_reference(tenant, owner, model, version)
                self.kept[(tenant, owner, model, version)] = time.monotonic()
            found = await self.store.drift(tenant, owner, model, version, now, self.window_hours)
            if found is None:
                continue
            key = (series_label(owner, model), str(version))
            if key not in worst or (found.flagged, max(found.psi.values(), default=0)) > (
                worst[key].flagged,
                max(worst[key].psi.values(), default=0),
            ):
                worst[key] = found
        self.series.drift = worst

    async def run(self, stopping: asyncio.Event, every_s: float) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every_s)
            try:
                await self.check_drift()
            except Exception as exc:  # the next tick tries again
                log.warning("quality.drift_check_failed", error=str(exc))
