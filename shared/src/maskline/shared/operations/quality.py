"""How each model version behaves over time: hourly summaries of its finished jobs, and drift of
those jobs against the version's evaluation reference.

Audit folds every finished segmentation into the `quality` bucket (it reads every event already):
one key per tenant, model version and day, holding that day's hours. Keys are per tenant — the
tenant whose jobs they were — so a model shared with others shows its owner only the owner's own
traffic. The bucket keeps 30 days (its age limit; a day's key is last written on that day).

Drift is measured per feature of `model_v1.QUALITY_BINS` with the population stability index
(PSI) of the live window's histogram against the reference's; a version is flagged when any
feature's PSI exceeds `DRIFT_PSI` and the chance floor of the two sample sizes (`noise_floor`),
over at least `MIN_WINDOW_JOBS` jobs (docs/monitoring.md).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec
from nats.js import JetStreamContext

from maskline.contracts import seg_v1
from maskline.contracts.http_v1 import DRIFT_PSI, MIN_WINDOW_JOBS, Drift
from maskline.contracts.model_v1 import QUALITY_BINS, QualityReference
from maskline.contracts.subjects import PLATFORM_TENANT
from maskline.shared.bus import read_stream
from maskline.shared.kv import BucketStore, Revisions, compare_and_set, get_decoded

BUCKET = "quality"
#: Counts added to every bin of both histograms before comparing: an empty bin would make PSI
#: infinite, and small samples would read as drift.
SMOOTHING = 0.5
FEATURES = tuple(QUALITY_BINS)
#: The standard normal's 0.999 quantile (the significance `noise_floor` asks of a shift).
Z_999 = 3.0902
#: Job latency bins (ms) of the hourly summaries.
LATENCY_MS_EDGES = (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


def bin_of(feature: str, value: float) -> int:
    """The bin of `value`: a value on an edge belongs to the bin below it, as Prometheus' `le`
    buckets count it."""
    return bisect.bisect_left(QUALITY_BINS[feature], value)


def empty_histograms() -> dict[str, list[int]]:
    return {f: [0] * (len(edges) + 1) for f, edges in QUALITY_BINS.items()}


def features(confidence: seg_v1.Confidence | None, brightness_: float | None, width: int, height: int) -> dict[str, float]:
    """A job's values of the watched features (a prompted job has no whole-image confidence)."""
    found = {"megapixels": width * height / 1e6}
    if confidence is not None:
        found["mean_probability"] = confidence.mean_probability
        found["uncertain_fraction"] = confidence.uncertain_fraction
    if brightness_ is not None:
        found["brightness"] = brightness_
    return found


def reference_of(samples: Iterable[dict[str, float]]) -> QualityReference:
    """An evaluation's reference: its images' feature values, binned."""
    counts = empty_histograms()
    images = 0
    for sample in samples:
        images += 1
        for feature, value in sample.items():
            counts[feature][bin_of(feature, value)] += 1
    return QualityReference(images=images, histograms={f: tuple(c) for f, c in counts.items()})


def noise_floor(reference: list[int] | tuple[int, ...], live: list[int] | tuple[int, ...]) -> float:
    """The PSI two samples of these sizes from one distribution stay under 999 times in 1000.

    PSI is the symmetric (Jeffreys) divergence of the two histograms, and n·m/(n+m) times it is
    close to a chi-square with (bins - 1) degrees of freedom when nothing changed; its 0.999
    quantile comes from the Wilson-Hilferty approximation. Small samples differ by chance far more
    than `DRIFT_PSI` (30 jobs against 40 images over 10 bins: about 0.5 on average), so a version
    is flagged only on a PSI above both."""
    n, m = sum(reference), sum(live)
    bins = sum(1 for a, b in zip(reference, live, strict=True) if a or b)
    if not n or not m or bins < 2:
        return math.inf
    k = bins - 1
    quantile = k * (1 - 2 / (9 * k) + Z_999 * math.sqrt(2 / (9 * k))) ** 3
    return quantile * (n + m) / (n * m)


def psi(reference: Iterable[int], live: Iterable[int]) -> float:
    """Population stability index of two histograms over the same bins (smoothed, see SMOOTHING)."""
    ref = [n + SMOOTHING for n in reference]
    now = [n + SMOOTHING for n in live]
    ref_total, now_total = sum(ref), sum(now)
    value = 0.0
    for r, n in zip(ref, now, strict=True):
        p, q = r / ref_total, n / now_total
        value += (q - p) * math.log(q / p)
    return round(value, 4)


class Hour(msgspec.Struct, kw_only=True):
    """One hour of one version's finished jobs (of one tenant)."""

    jobs: int = 0
    failed: int = 0
    canary: int = 0
    out_of_domain: int = 0
    """Jobs with more than `seg_v1.LOW_CONFIDENCE_ABOVE` uncertain pixels."""
    regions: int = 0
    latency_ms_sum: float = 0.0
    latency_ms: list[int] = msgspec.field(default_factory=lambda: [0] * (len(LATENCY_MS_EDGES) + 1))
    histograms: dict[str, list[int]] = msgspec.field(default_factory=empty_histograms)
    sums: dict[str, float] = {}
    """By feature: the sum of the jobs' values (a mean is sums / the histogram's total)."""
    failures: dict[str, int] = {}
    """By error code."""
    aliases: dict[str, int] = {}
    """Jobs by the alias they resolved."""

    def merge(self, other: Hour) -> None:
        self.jobs += other.jobs
        self.failed += other.failed
        self.canary += other.canary
        self.out_of_domain += other.out_of_domain
        self.regions += other.regions
        self.latency_ms_sum += other.latency_ms_sum
        self.latency_ms = [a + b for a, b in zip(self.latency_ms, other.latency_ms, strict=True)]
        for feature, counts in other.histograms.items():
            mine = self.histograms.setdefault(feature, [0] * len(counts))
            self.histograms[feature] = [a + b for a, b in zip(mine, counts, strict=True)]
        for feature, value in other.sums.items():
            self.sums[feature] = self.sums.get(feature, 0.0) + value
        for table, more in ((self.failures, other.failures), (self.aliases, other.aliases)):
            for key, n in more.items():
                table[key] = table.get(key, 0) + n

    def mean(self, feature: str) -> float | None:
        counted = sum(self.histograms.get(feature, ()))
        return round(self.sums.get(feature, 0.0) / counted, 6) if counted else None


class Day(msgspec.Struct, kw_only=True):
    """The hours (0-23, UTC) of one day with jobs."""

    hours: dict[int, Hour] = {}


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """One finished job, as the summaries count it."""

    tenant: str
    owner: str
    model: str
    version: int
    at: datetime
    latency_ms: float | None = None
    failed_code: str | None = None
    alias: str | None = None
    canary: bool = False
    regions: int = 0
    values: dict[str, float] = {}

    def hour(self) -> Hour:
        hour = Hour(jobs=1, canary=int(self.canary), regions=self.regions)
        if self.failed_code is not None:
            hour.failed, hour.failures = 1, {self.failed_code: 1}
        if self.latency_ms is not None:
            hour.latency_ms_sum = self.latency_ms
            hour.latency_ms[bisect.bisect_left(LATENCY_MS_EDGES, self.latency_ms)] += 1
        for feature, value in self.values.items():
            hour.histograms[feature][bin_of(feature, value)] += 1
            hour.sums[feature] = value
        if self.values.get("uncertain_fraction", 0.0) > seg_v1.LOW_CONFIDENCE_ABOVE:
            hour.out_of_domain = 1
        if self.alias:
            hour.aliases = {self.alias: 1}
        return hour


def series_label(owner: str, model: str) -> str:
    """A model's `model` label in the per-version Prometheus series: the platform's bundled models by
    name; a tenant's model by a digest of its owner and name, since /metrics answers without a key
    and neither tenants' names nor their models' belong there. The owner finds its label in
    `/v1/quality` (`metrics_label`)."""
    if owner == PLATFORM_TENANT:
        return f"{owner}/{model}"
    return "t-" + hashlib.sha256(f"{owner}/{model}".encode()).hexdigest()[:12]


def version_prefix(tenant: str, owner: str, model: str, version: int) -> str:
    return f"{tenant}.{owner}.{model}.{version}"


def day_key(tenant: str, owner: str, model: str, version: int, day: datetime) -> str:
    return f"{version_prefix(tenant, owner, model, version)}.d{day:%Y%m%d}"


def reference_key(tenant: str, owner: str, model: str, version: int) -> str:
    return f"{version_prefix(tenant, owner, model, version)}.reference"


def drift(reference: QualityReference, window: Iterable[Hour], window_hours: int) -> Drift:
    total = Hour()
    for hour in window:
        total.merge(hour)
    jobs = sum(total.histograms.get("mean_probability", [0]))
    scores: dict[str, float] = {}
    over: list[str] = []
    for feature in FEATURES:
        ref, live = reference.histograms.get(feature), total.histograms.get(feature)
        if ref and live and sum(ref) and sum(live) and len(ref) == len(live):
            scores[feature] = psi(ref, live)
            if scores[feature] > max(DRIFT_PSI, noise_floor(tuple(ref), tuple(live))):
                over.append(feature)
    succeeded = total.jobs - total.failed
    return Drift(
        window_hours=window_hours,
        jobs=jobs,
        psi=scores,
        flagged=bool(over) and jobs >= MIN_WINDOW_JOBS,
        features=tuple(over) if jobs >= MIN_WINDOW_JOBS else (),
        out_of_domain_rate=round(total.out_of_domain / jobs, 4) if jobs and succeeded else None,
        reference_images=reference.images,
    )


def hours_back(now: datetime, hours: int) -> list[datetime]:
    """The starts of the last `hours` hours, oldest first, the current one last."""
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=h) for h in range(hours - 1, -1, -1)]


class StoredReference(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's reference for a version: from its latest evaluation (by the evaluation's time)."""

    created: datetime
    reference: QualityReference


_day = msgspec.json.Decoder(Day)
_reference = msgspec.json.Decoder(StoredReference)


class QualityStore(BucketStore):
    """The `quality` bucket: audit writes, the gateway reads (each tenant its own keys)."""

    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)
        self._revisions = Revisions(1024)

    async def add(self, outcomes: list[Outcome]) -> None:
        """Fold finished jobs into their days: one compare-and-set per (version, day)."""
        by_key: dict[str, dict[int, Hour]] = {}
        for o in outcomes:
            hours = by_key.setdefault(day_key(o.tenant, o.owner, o.model, o.version, o.at.astimezone(UTC)), {})
            hour = o.at.astimezone(UTC).hour
            if hour in hours:
                hours[hour].merge(o.hour())
            else:
                hours[hour] = o.hour()
        for key, hours in by_key.items():

            def change(current: Day | None, hours: dict[int, Hour] = hours) -> Day:
                day = current or Day()
                for h, counted in hours.items():
                    mine = day.hours.get(h)
                    if mine is None:
                        day.hours[h] = msgspec.json.decode(msgspec.json.encode(counted), type=Hour)
                    else:
                        mine.merge(counted)
                return day

            await compare_and_set(self.kv, key, _day, change, revisions=self._revisions)

    async def set_reference(
        self, tenant: str, owner: str, model: str, version: int, reference: QualityReference, created: datetime
    ) -> None:
        """The tenant's reference for the version, unless one from a later evaluation is there (a
        late redelivery of an older evaluation changes nothing)."""
        new = StoredReference(created=created, reference=reference)
        await compare_and_set(
            self.kv,
            reference_key(tenant, owner, model, version),
            _reference,
            lambda cur: new if cur is None or cur.created < created else None,
        )

    async def keep_reference(self, tenant: str, owner: str, model: str, version: int) -> None:
        """Write the reference again: the bucket's age limit (30 days) would drop a reference that a
        version still in use was evaluated with long ago."""
        key = reference_key(tenant, owner, model, version)
        stored = await get_decoded(self.kv, key, _reference)
        if stored is not None:
            await self.kv.put(key, msgspec.json.encode(stored))

    async def reference(self, tenant: str, owner: str, model: str, version: int) -> QualityReference | None:
        stored = await get_decoded(self.kv, reference_key(tenant, owner, model, version), _reference)
        return None if stored is None else stored.reference

    async def hours(
        self, tenant: str, owner: str, model: str, version: int, starts: list[datetime]
    ) -> list[tuple[datetime, Hour]]:
        """The summaries of the given hours that had jobs, oldest first."""
        days: dict[str, Day | None] = {}
        found = []
        for start in starts:
            key = day_key(tenant, owner, model, version, start)
            if key not in days:
                fetched: Day | None = await get_decoded(self.kv, key, _day)
                days[key] = fetched
            day = days[key]
            if day is not None and start.hour in day.hours:
                found.append((start, day.hours[start.hour]))
        return found

    async def drift(self, tenant: str, owner: str, model: str, version: int, now: datetime, window_hours: int) -> Drift | None:
        reference = await self.reference(tenant, owner, model, version)
        if reference is None:
            return None
        window = await self.hours(tenant, owner, model, version, hours_back(now, window_hours))
        return drift(reference, (h for _, h in window), window_hours)

    async def versions(self, tenant: str) -> list[tuple[str, str, int]]:
        """(owner, model, version) of every version this tenant has summaries or a reference of."""
        prefix = f"$KV.{BUCKET}.{tenant}."
        seen: set[tuple[str, str, int]] = set()
        for msg in await read_stream(self.js, f"KV_{BUCKET}", prefix + ">", last_per_subject=True):
            parts = msg.subject[len(prefix) :].split(".")
            if len(parts) == 4 and parts[2].isdigit():
                seen.add((parts[0], parts[1], int(parts[2])))
        return sorted(seen)


def latency_quantile(hour: Hour, q: float) -> float | None:
    """An upper bound of the q-quantile of the hour's job latency (the bin edge it falls under)."""
    total = sum(hour.latency_ms)
    if not total:
        return None
    running = 0
    for index, n in enumerate(hour.latency_ms):
        running += n
        if running >= q * total:
            return LATENCY_MS_EDGES[index] if index < len(LATENCY_MS_EDGES) else math.inf
    return math.inf
