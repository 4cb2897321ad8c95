"""The sweep's search space as Optuna sees it, and the settings it may start with."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from maskline.contracts.train_v1 import SearchDimension
from maskline.services.train.sweeps import check_start, distributions
from maskline.shared.errors import PermanentError

pytestmark = pytest.mark.unit


def test_ranges_and_choices_become_optunas_distributions() -> None:
    space = distributions(
        {
            "learning_rate": SearchDimension(low=1e-5, high=1e-2, log=True),
            "batch": SearchDimension(low=4, high=16),
            "optimiser": SearchDimension(choices=("adamw", "sgd")),
        }
    )
    assert space["learning_rate"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert space["batch"] == IntDistribution(4, 16)
    assert space["optimiser"] == CategoricalDistribution(("adamw", "sgd"))


@pytest.mark.parametrize(
    "dimension", [SearchDimension(), SearchDimension(low=2.0, high=1.0), SearchDimension(low=0.0, high=1.0, log=True)]
)
def test_a_range_that_is_not_one_is_refused(dimension: SearchDimension) -> None:
    with pytest.raises(PermanentError):
        distributions({"learning_rate": dimension})


def test_start_settings_must_lie_in_the_space() -> None:
    space = distributions({"learning_rate": SearchDimension(low=1e-5, high=1e-2), "loss": SearchDimension(choices=("dice",))})
    check_start(space, ({"learning_rate": 1e-3, "loss": "dice"},))
    for outside in ({"learning_rate": 0.5}, {"loss": "cross-entropy"}, {"batch": 8}):
        with pytest.raises(PermanentError, match="not in the search space"):
            check_start(space, (outside,))
