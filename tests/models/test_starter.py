"""The committed starter weights are a real trained network, not a placeholder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from maskline.models.starter.train import evaluate

pytestmark = pytest.mark.unit
WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "starter" / "weights"


def test_committed_weights_reach_the_recorded_held_out_miou() -> None:
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    model = torch.jit.load(str(WEIGHTS / "model.pt"))
    miou, per_class = evaluate(model, 64, 128)
    assert miou > 0.93, per_class
    assert manifest["held_out"]["miou"] > 0.93
    assert (WEIGHTS / "model.pt").stat().st_size < 20 * 1024 * 1024
