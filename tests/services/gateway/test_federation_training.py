"""Which round a site that enrols now trains at once: the latest opened by either record (each may
lag), none once it closed, the site reported, or the run ended."""

from __future__ import annotations

from typing import Any

import pytest

from maskline.contracts import model_v1
from maskline.contracts.common_v1 import JobFailed, ObjectRef
from maskline.contracts.envelope import job_event
from maskline.contracts.model_v1 import VersionRef
from maskline.services.gateway.models.federation_training import round_to_train
from maskline.services.gateway.models.federations import Run
from maskline.shared.models.rounds import HeldRound

pytestmark = pytest.mark.unit
SITES = ("site-a", "site-b")


def opened(round_: int) -> model_v1.RoundOpened:
    return model_v1.RoundOpened(round=round_, rounds=3, model=VersionRef("g", round_), name="g", sites=SITES, quorum=2)


def run(*events: Any) -> Run:
    return Run("fed", "owner", [job_event("t", "test", e, tenant="owner", job_id="fed", trace_id="t") for e in events])


def closed(round_: int, final: bool = False) -> model_v1.RoundClosed:
    return model_v1.RoundClosed(round=round_, model=VersionRef("g", round_ + 1), sites=SITES, final=final)


def update(round_: int, site: str) -> model_v1.SiteUpdate:
    weights = ObjectRef(key=f"federations/owner/fed/{round_}/{site}.pt", size=1, sha256="0" * 64)
    return model_v1.SiteUpdate(round=round_, site=site, weights=weights, samples=1)


def test_the_open_round_by_the_trail_when_the_weights_record_lags() -> None:
    assert round_to_train(run(opened(1)), None, "site-a") == opened(1)
    behind = HeldRound(tenant="owner", current=opened(1), closed=True)
    assert round_to_train(run(opened(1), closed(1), opened(2)), behind, "site-a") == opened(2)


def test_the_open_round_by_the_weights_record_when_the_trail_lags() -> None:
    ahead = HeldRound(tenant="owner", current=opened(2))
    assert round_to_train(run(opened(1), closed(1)), ahead, "site-a") == opened(2)


def test_no_round_once_the_site_reported_the_round_closed_or_the_run_ended() -> None:
    assert round_to_train(run(opened(1), update(1, "site-a")), None, "site-a") is None
    assert round_to_train(run(opened(1), update(1, "site-a")), None, "site-b") == opened(1)
    assert round_to_train(run(opened(1), closed(1)), HeldRound(tenant="owner", current=opened(1), closed=True), "site-a") is None
    assert round_to_train(run(opened(1), closed(1)), None, "site-a") is None
    assert round_to_train(run(opened(3), closed(3, final=True)), None, "site-a") is None
    stopped = JobFailed(stage="weights", code="stopped", reason="stopped", subject=model_v1.FEDERATION_STOP_REQUESTED)
    assert round_to_train(run(opened(1), stopped), None, "site-a") is None
