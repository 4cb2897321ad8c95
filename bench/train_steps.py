"""Benchmark, prepared for a lent GPU: training steps per second of the bundled architectures, on
the CPU and (when there is one) on CUDA, in under five minutes.

    python -m bench.train_steps [--seconds 20] [--out train-steps.json]

Needs only torch, numpy and pillow beside this checkout (a GPU machine has no registries: the
working tree travels with the run; `maskline.models.starter` imports nothing else):

    PYTHONPATH=models/src:. python -m bench.train_steps --out $OUT/train-steps.json Each case: the network, Adam (lr 1e-3), the
cross-entropy loss on generated shapes (the starter's own data, masks as targets), warm-up steps
first, then as many steps as fit in `--seconds` (CUDA timed with events, synchronised at the end).

- the starter U-Net (`maskline.models.starter.unet:UNet`, 0.5 M parameters) as trained (128 px,
  batch 16) and larger (batch 64; 256 px at batch 16), and at width 32 (1.9 M parameters).

The bundled person model is left out: it is MediaPipe's graph converted to TorchScript with its
weights as constants, so it has no trainable parameters and no architecture to rebuild.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maskline.models.starter import shapes
from maskline.models.starter.unet import UNet

WARMUP_STEPS = 3


def data(size: int, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images, masks = shapes.batch(np.random.default_rng(0), batch, size)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0).to(device)
    return x, torch.from_numpy(masks.astype(np.int64)).to(device)


def steps_per_second(make: Callable[[], nn.Module], size: int, batch: int, device: torch.device, seconds: float) -> float:
    model = make().to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = data(size, batch, device)
    loss_of = nn.CrossEntropyLoss()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_of(model(x), y).backward()
        optimiser.step()

    for _ in range(WARMUP_STEPS):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
        if device.type == "cuda" and steps % 20 == 0:
            torch.cuda.synchronize(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return round(steps / (time.perf_counter() - started), 2)


CASES: list[tuple[str, Callable[[], nn.Module], int, tuple[int, ...]]] = [
    ("starter-unet-w16", lambda: UNet(classes=len(shapes.LABELS), width=16), 128, (16, 64)),
    ("starter-unet-w16", lambda: UNet(classes=len(shapes.LABELS), width=16), 256, (16,)),
    ("starter-unet-w32", lambda: UNet(classes=len(shapes.LABELS), width=32), 128, (16,)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per case and device")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    devices = [torch.device("cpu")] + ([torch.device("cuda", 0)] if torch.cuda.is_available() else [])
    rows = []
    for name, make, size, batches in CASES:
        for batch in batches:
            row: dict[str, Any] = {"model": name, "size": size, "batch": batch}
            for device in devices:
                row[f"{device.type}_steps_per_s"] = steps_per_second(make, size, batch, device, args.seconds)
                row[f"{device.type}_images_per_s"] = round(row[f"{device.type}_steps_per_s"] * batch, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = {
        "command": f"python -m bench.train_steps --seconds {args.seconds}",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
