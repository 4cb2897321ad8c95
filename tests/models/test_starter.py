"""The committed starter weights are a real trained network, not a placeholder."""

from __future__ import annotations

import json

import pytest
import torch

from maskline.models import starter
from maskline.models.starter.train import evaluate

pytestmark = pytest.mark.unit


def test_committed_weights_reach_the_recorded_held_out_miou() -> None:
    manifest = json.loads((starter.FOLDER / "weights" / "manifest.json").read_text())
    model = torch.jit.load(str(starter.FOLDER / "weights" / "model.pt"))
    miou, per_class = evaluate(model, 64, 128)
    assert miou > 0.93, per_class
    assert manifest["held_out"]["miou"] > 0.93
    assert (starter.FOLDER / "weights" / "model.pt").stat().st_size < 20 * 1024 * 1024
