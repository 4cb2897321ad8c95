"""Each merge method on hand-made tensors with known answers."""

from __future__ import annotations

import pytest
import torch

from maskline.services.weights.methods import MergeOptions, merge_integer, merge_tensor

pytestmark = pytest.mark.unit
A = torch.tensor([1.0, -4.0, 2.0, 0.0])
B = torch.tensor([3.0, 2.0, -5.0, 0.0])
C = torch.tensor([2.0, 1.0, 1.0, 6.0])
DEFAULTS = MergeOptions()


def test_avg_max_absmax_are_the_studys_definitions() -> None:
    assert merge_tensor("avg", [A, B], DEFAULTS).tolist() == [2.0, -1.0, -1.5, 0.0]
    assert merge_tensor("max", [A, B], DEFAULTS).tolist() == [3.0, 2.0, 2.0, 0.0]
    assert merge_tensor("absmax", [A, B], DEFAULTS).tolist() == [3.0, -4.0, -5.0, 0.0]  # largest magnitude, sign kept


def test_weighted_is_fedavg_by_sample_count() -> None:
    merged = merge_tensor("weighted", [A, B], MergeOptions(weights=(300.0, 100.0)))
    assert merged.tolist() == [1.5, -2.5, 0.25, 0.0]


def test_median_is_elementwise() -> None:
    assert merge_tensor("median", [A, B, C], DEFAULTS).tolist() == [2.0, 1.0, 1.0, 0.0]


def test_task_arithmetic_adds_scaled_task_vectors_to_the_base() -> None:
    base = torch.tensor([1.0, 1.0, 1.0, 1.0])
    merged = merge_tensor("task_arithmetic", [A, B], MergeOptions(scale=0.5), base)
    # tasks: A-base = [0,-5,1,-1], B-base = [2,1,-6,-1]; sum = [2,-4,-5,-2]; base + 0.5*sum
    assert merged.tolist() == [2.0, -1.0, -1.5, 0.0]


def test_ties_trims_elects_a_sign_and_averages_the_agreeing_entries() -> None:
    base = torch.zeros(4)
    t1 = torch.tensor([4.0, -1.0, 3.0, 0.1])
    t2 = torch.tensor([2.0, 5.0, -1.0, -0.2])
    t3 = torch.tensor([-1.0, 4.0, 2.0, 0.3])
    merged = merge_tensor("ties", [t1, t2, t3], MergeOptions(density=0.5), base)
    # keep top 2 by magnitude: t1 -> [4,0,3,0], t2 -> [2,5,0,0], t3 -> [0,4,2,0]
    # elected signs: [+, +, +, 0]; mean of agreeing non-zeros: [3, 4.5, 2.5, 0]
    assert merged.tolist() == [3.0, 4.5, 2.5, 0.0]


def test_integer_buffers_are_not_averaged() -> None:
    counts = [torch.tensor(7), torch.tensor(12)]
    assert merge_integer("bn1.num_batches_tracked", counts).item() == 12
    assert merge_integer("lookup", [torch.tensor([1, 2]), torch.tensor([1, 2])]).tolist() == [1, 2]
    with pytest.raises(ValueError, match="'lookup' differs"):
        merge_integer("lookup", [torch.tensor([1, 2]), torch.tensor([1, 3])])
