"""A model that costs nothing: it answers the same class probabilities for every image, at once,
so a run through the whole platform with it measures the platform alone (`bench.pipeline --null-model`).

Registered like any model (TorchScript, through the gateway): what Triton still spends on it is its
own per-request cost, which the benchmark counts under Triton and leaves out of "outside Triton".
"""

from __future__ import annotations

from pathlib import Path

import torch

NAME = "null-seg"
LABELS = ["background", "thing"]
SIZE = (128, 128)


class Null(torch.nn.Module):
    """A fixed answer: a square in the middle is `thing`, the rest background (one region per image)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        probs = torch.zeros(1, 2, height, width)
        probs[0, 0] = 0.9
        probs[0, 1] = 0.1
        probs[0, :, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = torch.tensor([0.1, 0.9]).view(2, 1, 1)
        self.register_buffer("probs", probs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.probs.expand(x.shape[0], -1, -1, -1)


def weights(folder: Path) -> Path:
    path = folder / "null-seg.pt"
    torch.jit.save(torch.jit.script(Null(*SIZE)), str(path))
    return path
