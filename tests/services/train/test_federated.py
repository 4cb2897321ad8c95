"""A site's own network must fit the federation's model tensor for tensor: the round merges them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maskline.models.digits import DigitsSegmenter
from maskline.services.train.federated import check_fits
from maskline.shared.errors import PermanentError

pytestmark = pytest.mark.unit


def test_the_same_architecture_fits_whatever_its_initialisation() -> None:
    torch.manual_seed(1)
    mine = DigitsSegmenter()
    torch.manual_seed(2)
    check_fits(mine, torch.jit.script(DigitsSegmenter().eval()))


def test_another_network_is_refused_naming_what_differs() -> None:
    other = DigitsSegmenter()
    other.head = nn.Linear(16 * 4 * 4, 3)
    with pytest.raises(PermanentError) as refused:
        check_fits(other, DigitsSegmenter())
    assert refused.value.code == "architecture_mismatch" and "head.weight" in refused.value.reason
