"""Benchmark: what training through the platform costs against the same training in one process.

    python -m bench.training [--rounds 3] [--steps 80] [--out docs/bench/training.json]

The same fine-tune (the starter U-Net on 40 generated shapes under pixel noise, 8 of them held out
for validation every 20 steps; batch 8, AdamW, cosine, seed 3) is run, alternately:

- **in process**: `maskline.services.train.loop.Trainer` on tensors already in memory (the floor:
  what a script that loads the data itself would time for its loop);
- **through the platform**: `POST /v1/trainings` on the embedded stack, from the request to the
  trained version registered (`wait_job`), and the train worker's own training time (the run
  record's `seconds`: the loop plus its progress events, checkpoints and curves).

Medians over `--rounds`; the run record's validation mIoU is set beside the in-process one (the
same data in the same order, the same seed). Needs the embedded stack's binaries (./dev installs them).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from maskline.client import JsonClient
from maskline.contracts.model_v1 import ModelOutput
from maskline.contracts.train_v1 import Hyperparameters
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import WEIGHTS, shapes
from maskline.services.train import network
from maskline.services.train.data import Examples, split
from maskline.services.train.loop import Trainer
from maskline.shared.config import load

IMAGES, NOISE, SEED = 40, 60.0, 11


def noisy_shapes() -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    images, masks = shapes.batch(np.random.default_rng(SEED), IMAGES, 128)
    noise = np.random.default_rng(SEED + 1).normal(0.0, NOISE, images.shape)
    return np.clip(images.astype(np.float64) + noise, 0, 255).astype(np.uint8), masks.astype(np.uint8)


def png(array: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def in_process(hyper: Hyperparameters) -> tuple[float, float | None]:
    images, masks = noisy_shapes()
    order = sorted(range(IMAGES), key=lambda i: f"n{i}.png")  # the dataset's order: its files by name
    images, masks = images[order], masks[order]
    examples = Examples(torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0), torch.from_numpy(masks))
    trained, held = split(IMAGES, hyper.validation_share, hyper.seed)
    trainer = Trainer(
        network.from_torchscript(WEIGHTS.read_bytes()),
        hyper,
        ModelOutput(),
        len(shapes.LABELS),
        examples.subset(trained),
        examples.subset(held),
        torch.device("cpu"),
    )
    started = time.perf_counter()
    trainer.advance(hyper.steps)
    return time.perf_counter() - started, trainer.curve[-1].validation_miou


def through_platform(client: JsonClient, hyper: Hyperparameters) -> tuple[float, float, float | None]:
    started = time.perf_counter()
    job = client.train(
        name="bench-noisy",
        dataset="bench-noisy",
        base={"name": "shapes-unet", "version": 1, "owner": "maskline"},
        hyperparameters={f: getattr(hyper, f) for f in ("steps", "batch", "learning_rate", "validate_every", "seed")},
    )
    done = client.wait_job(job["id"], timeout=1800)
    wall = time.perf_counter() - started
    assert done["status"] == "completed", done
    run = client.run(job["id"])
    return wall, float(run["seconds"]), run["validation_miou"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    hyper = Hyperparameters(steps=args.steps, batch=8, learning_rate=2e-3, validate_every=20, seed=3)
    home = tempfile.mkdtemp(prefix="maskline-bench-training-")
    stack = Stack(on_free_ports(load(StackSettings), home, log_level="warning"))
    stack.up()
    rows: dict[str, list[float]] = {"in_process_s": [], "platform_wall_s": [], "platform_worker_s": []}
    mious: dict[str, Any] = {}
    try:
        client = JsonClient(stack.gateway_url, api_key="dev-key", timeout=120)
        images, masks = noisy_shapes()
        for i in range(IMAGES):
            client.upload_dataset_file("bench-noisy", "images", png(images[i]), f"n{i}.png")
            client.upload_dataset_file("bench-noisy", "masks", png(masks[i]), f"n{i}.png")
        for _ in range(args.rounds):
            seconds, mious["in_process"] = in_process(hyper)
            rows["in_process_s"].append(seconds)
            wall, worker, mious["platform"] = through_platform(client, hyper)
            rows["platform_wall_s"].append(wall)
            rows["platform_worker_s"].append(worker)
    finally:
        stack.down()
    medians = {k: round(statistics.median(v), 3) for k, v in rows.items()}
    report = {
        "command": f"python -m bench.training --rounds {args.rounds} --steps {args.steps}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "torch": str(torch.__version__),
        "runs": rows,
        "medians_s": medians,
        "steps_per_s": {k: round(args.steps / v, 2) for k, v in medians.items()},
        "platform_wall_over_in_process": round(medians["platform_wall_s"] / medians["in_process_s"], 2),
        "platform_worker_over_in_process": round(medians["platform_worker_s"] / medians["in_process_s"], 2),
        "validation_miou": mious,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
