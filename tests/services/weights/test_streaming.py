"""Refusal of mismatched models, and the memory bound of the streaming merge."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskline.services.weights.methods import MergeOptions
from maskline.services.weights.streaming import IncompatibleModels, merge_states

pytestmark = pytest.mark.unit


def save(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(state, path)
    return path


def test_merges_every_key_of_same_shaped_models(tmp_path: Path) -> None:
    a = save(tmp_path / "a.pt", {"w": torch.ones(2, 2), "bn.num_batches_tracked": torch.tensor(3)})
    b = save(tmp_path / "b.pt", {"w": torch.full((2, 2), 3.0), "bn.num_batches_tracked": torch.tensor(5)})
    merged = merge_states([a, b], ["a/1", "b/1"], "avg", MergeOptions())
    assert merged["w"].tolist() == [[2.0, 2.0], [2.0, 2.0]] and merged["bn.num_batches_tracked"].item() == 5


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"w": torch.ones(2, 2)}, "key 'v' is missing from b/1"),
        ({"w": torch.ones(2, 2), "v": torch.ones(3), "x": torch.ones(1)}, "key 'x' is only in b/1"),
        ({"w": torch.ones(2, 3), "v": torch.ones(3)}, "'w': shape (2, 2) in a/1 but (2, 3) in b/1"),
        (
            {"w": torch.ones(2, 2, dtype=torch.float64), "v": torch.ones(3)},
            "'w': dtype torch.float32 in a/1 but torch.float64 in b/1",
        ),
    ],
    ids=["missing-key", "extra-key", "shape", "dtype"],
)
def test_mismatched_models_are_refused_naming_the_first_mismatch(tmp_path: Path, other: dict, message: str) -> None:
    a = save(tmp_path / "a.pt", {"w": torch.ones(2, 2), "v": torch.ones(3)})
    b = save(tmp_path / "b.pt", other)
    with pytest.raises(IncompatibleModels) as err:
        merge_states([a, b], ["a/1", "b/1"], "avg", MergeOptions())
    assert message in str(err.value)


MEASURE = """
import sys, torch, pathlib
from maskline.services.weights.methods import MergeOptions
from maskline.services.weights.streaming import merge_states
def anon_kb():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1])
paths = [pathlib.Path(p) for p in sys.argv[1:]]
before = anon_kb()
peak = before
import threading, time
stop = False
def sample():
    global peak
    while not stop:
        peak = max(peak, anon_kb()); time.sleep(0.002)
t = threading.Thread(target=sample); t.start()
merged = merge_states(paths, [str(p) for p in paths], 'avg', MergeOptions())
stop = True; t.join()
print((max(peak, anon_kb()) - before) * 1024)
"""


def test_streaming_merge_keeps_memory_near_one_model_plus_the_output(tmp_path: Path) -> None:
    # 8 models of 16 tensors x 2 MB = 32 MB each; loading all would allocate 256 MB.
    one_model = 16 * 512 * 1024 * 4
    paths = [save(tmp_path / f"m{i}.pt", {f"layer{k}": torch.randn(512, 1024) for k in range(16)}) for i in range(8)]
    out = subprocess.run([sys.executable, "-c", MEASURE, *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    allocated = int(out.stdout.strip())
    assert allocated <= 3 * one_model, f"allocated {allocated / 1e6:.0f} MB for 8 x {one_model / 1e6:.0f} MB models"
