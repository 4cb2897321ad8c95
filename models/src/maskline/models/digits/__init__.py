"""A small digit classifier served as a segmentation model: the network of the model-merging study
(`bench/federated_study.py`), which federated sites train through the train service.

The platform trains and serves segmentation models, so the classifier's logits are given at every
pixel of its 8x8 input: a mask filled with the digit's class is its label, and per-pixel cross
entropy is then the classifier's cross entropy. It reads the first channel of the RGB input (the
digits are grey).
"""

from __future__ import annotations

import torch
from torch import nn

LABELS = tuple(str(d) for d in range(10))
INPUT_SIZE = (8, 8)


class DigitsClassifier(nn.Module):
    """The study's network: two 3x3 convolutions with BatchNorm and a linear head over 8x8 grey
    digits (N x 1 x 8 x 8 in, N x 10 class logits out)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(16 * 4 * 4, 10)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x).flatten(1))
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x)


class DigitsSegmenter(DigitsClassifier):
    """The same network (the same parameters, built in the same order: one seed gives both the same
    weights) served as segmentation: N x 3 x 8 x 8 in, the logits at every pixel out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classify(x[:, :1])
        return logits[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
