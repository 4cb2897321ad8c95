"""Every event the job-state projection folds has its rule in one table (`shared/jobs/effects.py`)."""

from __future__ import annotations

import pytest

from maskline.contracts import subjects as table
from maskline.shared.jobs.effects import EFFECTS

pytestmark = pytest.mark.unit


def test_every_subject_that_moves_a_job_has_its_effect() -> None:
    missing = [s.type for s in table.SUBJECTS if s.job_status is not None and s.payload not in EFFECTS]
    assert missing == [], f"add an @effect for the payload of {missing} (shared/jobs/effects.py)"


def test_no_effect_is_kept_for_a_payload_no_subject_carries() -> None:
    carried = {s.payload for s in table.SUBJECTS if s.job_status is not None}
    assert set(EFFECTS) <= carried, set(EFFECTS) - carried
