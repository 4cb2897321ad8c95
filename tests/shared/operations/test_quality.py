from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from maskline.contracts import seg_v1
from maskline.contracts.model_v1 import QUALITY_BINS
from maskline.shared.bus import Bus
from maskline.shared.images import statistics
from maskline.shared.operations import quality
from maskline.shared.operations.quality import Outcome, QualityStore

NOW = datetime(2026, 12, 5, 10, 30, tzinfo=UTC)


def outcome(values: dict[str, float], at: datetime = NOW, tenant: str = "t1", **kw: object) -> Outcome:
    return Outcome(tenant=tenant, owner="o", model="m", version=1, at=at, values=values, **kw)  # type: ignore[arg-type]


def in_domain(rng: np.random.Generator) -> dict[str, float]:
    return {
        "mean_probability": float(rng.uniform(0.985, 0.999)),
        "uncertain_fraction": float(rng.uniform(0.0, 0.02)),
        "brightness": float(rng.uniform(0.2, 0.8)),
        "megapixels": 0.016,
    }


def out_of_domain(rng: np.random.Generator) -> dict[str, float]:
    return {
        "mean_probability": float(rng.uniform(0.9, 0.97)),
        "uncertain_fraction": float(rng.uniform(0.05, 0.18)),
        "brightness": float(rng.uniform(0.4, 0.6)),
        "megapixels": 0.09,
    }


@pytest.mark.unit
def test_values_fall_in_the_contracts_bins_and_the_edges_belong_above() -> None:
    edges = QUALITY_BINS["uncertain_fraction"]
    assert quality.bin_of("uncertain_fraction", 0.0) == 0
    assert quality.bin_of("uncertain_fraction", edges[0]) == 0  # on an edge: below it, as Prometheus' `le`
    assert quality.bin_of("uncertain_fraction", edges[0] + 1e-9) == 1
    assert quality.bin_of("uncertain_fraction", 1.0) == len(edges)


@pytest.mark.unit
def test_psi_is_zero_for_the_same_histogram_and_grows_with_the_shift() -> None:
    same = (10, 20, 30, 40)
    assert quality.psi(same, same) == 0.0
    assert 0 < quality.psi(same, (12, 20, 30, 38)) < quality.psi(same, (40, 30, 20, 10))


@pytest.mark.unit
def test_the_same_distribution_is_not_flagged_and_another_one_is() -> None:
    rng = np.random.default_rng(5)
    reference = quality.reference_of(in_domain(rng) for _ in range(40))
    for seed in range(10):  # chance differences of small samples stay under the floor
        r = np.random.default_rng(100 + seed)
        same = quality.drift(reference, [outcome(in_domain(r)).hour() for _ in range(30)], 24)
        assert not same.flagged and same.jobs == 30 and same.out_of_domain_rate == 0.0
    shifted = quality.drift(reference, [outcome(out_of_domain(rng)).hour() for _ in range(30)], 24)
    assert shifted.flagged and {"mean_probability", "uncertain_fraction", "megapixels"} <= set(shifted.features)
    assert shifted.out_of_domain_rate is not None and shifted.out_of_domain_rate > 0.5


@pytest.mark.unit
def test_too_few_jobs_give_no_verdict() -> None:
    rng = np.random.default_rng(6)
    reference = quality.reference_of(in_domain(rng) for _ in range(40))
    few = quality.drift(reference, [outcome(out_of_domain(rng)).hour() for _ in range(quality.MIN_WINDOW_JOBS - 1)], 24)
    assert not few.flagged and few.features == () and few.psi["uncertain_fraction"] > quality.DRIFT_PSI


@pytest.mark.unit
def test_an_hour_counts_failures_latency_aliases_and_means() -> None:
    hour = quality.Hour()
    hour.merge(outcome({"mean_probability": 0.99, "uncertain_fraction": 0.2}, latency_ms=40.0, alias="stable", regions=3).hour())
    hour.merge(outcome({"mean_probability": 0.97, "uncertain_fraction": 0.0}, latency_ms=120.0, canary=True).hour())
    hour.merge(outcome({}, failed_code="triton_unavailable").hour())
    assert (hour.jobs, hour.failed, hour.canary, hour.out_of_domain, hour.regions) == (3, 1, 1, 1, 3)
    assert hour.failures == {"triton_unavailable": 1} and hour.aliases == {"stable": 1}
    assert hour.mean("mean_probability") == pytest.approx(0.98) and hour.mean("brightness") is None
    assert quality.latency_quantile(hour, 0.5) == 50.0 and quality.latency_quantile(hour, 0.9) == 250.0


@pytest.mark.unit
def test_a_tenants_model_is_labelled_by_a_digest_the_platforms_by_name() -> None:
    assert quality.series_label("maskline", "shapes-unet") == "maskline/shapes-unet"
    label = quality.series_label("tenant-a", "secret-project")
    assert label.startswith("t-") and "tenant-a" not in label and "secret" not in label
    assert label == quality.series_label("tenant-a", "secret-project") != quality.series_label("tenant-b", "secret-project")


@pytest.mark.unit
def test_confidence_of_probabilities_is_what_merge_reports() -> None:
    probs = np.zeros((2, 2, 2), np.float32)
    probs[0] = [[0.9, 0.6], [1.0, 0.5]]
    probs[1] = 1 - probs[0]
    c = statistics.confidence_of(probs)
    assert c.mean_probability == pytest.approx(0.75) and c.uncertain_fraction == 0.5
    assert c.uncertain_below == seg_v1.UNCERTAIN_BELOW


@pytest.mark.nats
async def test_summaries_are_kept_per_tenant_and_hour_and_drift_reads_the_window(bus: Bus) -> None:
    store = await QualityStore.opened(bus.js)
    tenant, other = f"q{uuid.uuid4().hex[:8]}", f"q{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(9)
    earlier = NOW - timedelta(hours=3)
    await store.add([outcome(in_domain(rng), at=earlier, tenant=tenant) for _ in range(5)])
    await store.add([outcome(out_of_domain(rng), at=NOW, tenant=tenant) for _ in range(40)])
    await store.add([outcome(in_domain(rng), at=NOW, tenant=other)])
    hours = await store.hours(tenant, "o", "m", 1, quality.hours_back(NOW, 24))
    assert [(start, h.jobs) for start, h in hours] == [(earlier.replace(minute=0), 5), (NOW.replace(minute=0), 40)]
    assert [h.jobs for _, h in await store.hours(other, "o", "m", 1, quality.hours_back(NOW, 24))] == [1]
    assert await store.drift(tenant, "o", "m", 1, NOW, 24) is None  # no reference yet
    await store.set_reference(tenant, "o", "m", 1, quality.reference_of(in_domain(rng) for _ in range(40)), NOW)
    older = quality.reference_of(out_of_domain(rng) for _ in range(7))
    await store.set_reference(tenant, "o", "m", 1, older, NOW - timedelta(days=1))  # a late redelivery of an older evaluation
    kept = await store.reference(tenant, "o", "m", 1)
    assert kept is not None and kept.images == 40
    await store.keep_reference(tenant, "o", "m", 1)
    assert await store.reference(tenant, "o", "m", 1) == kept
    last_hour = await store.drift(tenant, "o", "m", 1, NOW, 1)
    assert last_hour is not None and last_hour.flagged and last_hour.jobs == 40
    assert await store.versions(tenant) == [("o", "m", 1)]
    assert await store.drift(other, "o", "m", 1, NOW, 24) is None  # a reference is the tenant's own
