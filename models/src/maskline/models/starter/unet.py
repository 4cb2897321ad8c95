"""A small U-Net: the starter segmentation network (about 0.5 M parameters)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


def _block(cin: int, cout: int, activation: str = "relu") -> nn.Sequential:
    act = ACTIVATIONS[activation]
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        act(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        act(),
    )


class UNet(nn.Module):
    """Input: float32 N x 3 x H x W in [0, 1], H and W multiples of 8. Output: class logits."""

    def __init__(self, classes: int = 4, width: int = 16, activation: str = "relu") -> None:
        super().__init__()
        w, a = width, activation
        self.enc1 = _block(3, w, a)
        self.enc2 = _block(w, 2 * w, a)
        self.enc3 = _block(2 * w, 4 * w, a)
        self.bottom = _block(4 * w, 8 * w, a)
        self.pool = nn.MaxPool2d(2)
        self.up3 = nn.ConvTranspose2d(8 * w, 4 * w, 2, stride=2)
        self.dec3 = _block(8 * w, 4 * w, a)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _block(4 * w, 2 * w, a)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _block(2 * w, w, a)
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.bottom(self.pool(e3))
        d3 = self.dec3(torch.cat([self.up3(b), e3], 1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)
