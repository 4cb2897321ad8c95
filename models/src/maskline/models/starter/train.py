"""Train the starter U-Net on generated shapes and export it as TorchScript.

    python -m maskline.models.starter.train --out models/starter/weights

Writes model.pt (TorchScript), manifest.json (labels, input size, held-out mIoU, command).
Deterministic for a given seed on the same torch build.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskline.models.starter import shapes
from maskline.models.starter.unet import UNet

HELD_OUT_SEED = 1_000_003


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def mean_iou(pred: np.ndarray, truth: np.ndarray, classes: int) -> tuple[float, list[float]]:
    per_class = []
    for c in range(classes):
        inter = np.logical_and(pred == c, truth == c).sum()
        union = np.logical_or(pred == c, truth == c).sum()
        per_class.append(float(inter / union) if union else 1.0)
    return float(np.mean(per_class)), per_class


def evaluate(model: nn.Module, n: int, size: int) -> tuple[float, list[float]]:
    rng = np.random.default_rng(HELD_OUT_SEED)
    images, masks = shapes.batch(rng, n, size)
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, n, 32):
            preds.append(model(to_tensor(images[i : i + 32])).argmax(1).numpy())
    return mean_iou(np.concatenate(preds), masks, len(shapes.LABELS))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--held-out", type=int, default=256)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = UNet(classes=len(shapes.LABELS))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps)
    loss_fn = nn.CrossEntropyLoss()
    started = time.monotonic()
    for step in range(1, args.steps + 1):
        model.train()
        images, masks = shapes.batch(rng, args.batch, args.size)
        logits = model(to_tensor(images))
        loss = loss_fn(logits, torch.from_numpy(masks).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(json.dumps({"step": step, "loss": round(loss.item(), 4), "s": round(time.monotonic() - started)}), flush=True)

    miou, per_class = evaluate(model, args.held_out, args.size)
    args.out.mkdir(parents=True, exist_ok=True)
    model.eval()
    scripted = torch.jit.script(model)
    scripted.save(str(args.out / "model.pt"))
    manifest = {
        "name": "shapes-unet",
        "architecture": {
            "entrypoint": "maskline.models.starter.unet:UNet",
            "kwargs": {"classes": len(shapes.LABELS), "width": 16},
        },
        "labels": list(shapes.LABELS),
        "input_size": [args.size, args.size],
        "parameters": sum(p.numel() for p in model.parameters()),
        "held_out": {
            "images": args.held_out,
            "seed": HELD_OUT_SEED,
            "miou": round(miou, 4),
            "iou_per_class": [round(v, 4) for v in per_class],
        },
        "training": {
            "steps": args.steps,
            "batch": args.batch,
            "seed": args.seed,
            "seconds": round(time.monotonic() - started),
            "torch": torch.__version__,
            "command": "python -m maskline.models.starter.train " + " ".join(sys.argv[1:]),
        },
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest["held_out"]))


if __name__ == "__main__":
    main()
