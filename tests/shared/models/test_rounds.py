"""A site's consent becomes one round's training: its own dataset, the round's seat, a seed per
round, and its own initialisation in round 1 only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from maskline.contracts import model_v1, train_v1
from maskline.contracts.model_v1 import Architecture, VersionRef
from maskline.shared import keys
from maskline.shared.models.rounds import HeldRound, site_round_training

pytestmark = pytest.mark.unit
OWN = Architecture(entrypoint="maskline.models.digits:DigitsSegmenter")
SEAT = train_v1.SiteTraining(
    dataset="datasets/site-a/digits/",
    hyperparameters=train_v1.Hyperparameters(seed=17, steps=60),
    architecture=OWN,
    enrolled=datetime(2026, 12, 5, tzinfo=UTC),
)


def opened(round_: int) -> model_v1.RoundOpened:
    return model_v1.RoundOpened(
        round=round_, rounds=5, model=VersionRef("g", round_), name="g", sites=("site-a", "site-b"), quorum=2
    )


def test_round_one_starts_from_the_sites_own_initialisation_later_rounds_from_the_round_model() -> None:
    first, third = site_round_training(SEAT, opened(1), "owner", "fed"), site_round_training(SEAT, opened(3), "owner", "fed")
    assert first.architecture == OWN and third.architecture is None and first.base is third.base is None
    assert (first.hyperparameters.seed, third.hyperparameters.seed) == (17, 19)
    assert third.hyperparameters.steps == 60 and third.dataset == SEAT.dataset
    assert third.federation == train_v1.FederationSeat(federation="fed", owner="owner", round=3)


def test_a_round_is_open_to_a_site_until_it_reports_or_the_round_closes() -> None:
    held = HeldRound(tenant="owner", current=opened(2))
    assert held.open_to("site-a", 2) and not held.open_to("site-a", 1)
    held.updates["site-a"] = {"weights": {"sha256": "ab" * 32}}
    assert not held.open_to("site-a", 2) and held.open_to("site-b", 2)
    assert held.reported("site-a", 2, "ab" * 32) and not held.reported("site-a", 2, "cd" * 32)
    held.closing_at = 1.0  # a closer claimed it: what arrives now is late
    assert not held.open_to("site-b", 2)
    held.closing_at, held.closed = None, True
    assert not held.open_to("site-b", 2)


def test_a_sites_training_job_is_one_id_per_owner_federation_and_round() -> None:
    job = keys.site_training_job("owner", "fed", 2)
    assert job == keys.site_training_job("owner", "fed", 2) and job.endswith("-r2") and len(job) <= 128
    assert job != keys.site_training_job("other", "fed", 2) and job != keys.site_training_job("owner", "fed", 3)
    assert keys.tenant_of(keys.site_training("site-a", "owner", "fed")) == "site-a"  # in the site's own part
