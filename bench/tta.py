"""Quality of test-time augmentation on the starter model's held-out set: mIoU with and without TTA.

    python -m bench.tta [--images 256] [--size 256]

Runs exactly the production geometry (shared/images/transforms.py) and fusion, with the committed
TorchScript weights in-process (the same file Triton serves), on held-out images the model never
saw, generated at the sample images' size and resized to the model's 128x128 input like infer does.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import cv2
import numpy as np
import torch

from maskline.contracts.common_v1 import ALL_VARIANTS
from maskline.models.starter import shapes
from maskline.models.starter.train import HELD_OUT_SEED, mean_iou
from maskline.services.merge.render import upsample
from maskline.shared.images import transforms


def predict(model: torch.jit.ScriptModule, image: np.ndarray) -> np.ndarray:
    """H x W x C probabilities at the image's size, as infer + merge compute them."""
    small = cv2.resize(image, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(small.transpose(2, 0, 1)[None])), 1)[0].half().numpy()
    return upsample(probs, image.shape[1], image.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--angle", type=float, default=15.0)
    parser.add_argument("--sigma", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    weights = resources.files("maskline.models.starter").joinpath("weights/model.pt")
    model = torch.jit.load(str(weights)).eval()
    chosen = transforms.variants(ALL_VARIANTS, angle=args.angle, sigma=args.sigma)
    rng = np.random.default_rng(HELD_OUT_SEED)
    truths, single, fused = [], [], {m: [] for m in ("mean", "max", "vote")}
    seconds = {"single": 0.0, "tta": 0.0}
    for _ in range(args.images):
        image, truth = shapes.sample(rng, size=args.size)
        truths.append(truth)
        started = time.perf_counter()
        single.append(predict(model, image).argmax(-1))
        seconds["single"] += time.perf_counter() - started
        started = time.perf_counter()
        shape = truth.shape
        probs = []
        for v in chosen:
            p = predict(model, transforms.apply(v, image))
            probs.append(transforms.invert(v, p, shape))
        valid = [transforms.valid_region(v, shape) for v in chosen]
        for method in fused:
            fused[method].append(transforms.fuse(probs, valid, method).argmax(-1))  # type: ignore[arg-type]
        seconds["tta"] += time.perf_counter() - started
    classes = len(shapes.LABELS)
    truth_all = np.stack(truths)
    report = {
        "images": args.images,
        "size": args.size,
        "seed": HELD_OUT_SEED,
        "angle": args.angle,
        "sigma": args.sigma,
        "miou": {"no_tta": round(mean_iou(np.stack(single), truth_all, classes)[0], 4)},
        "cpu_ms_per_image_in_process": {k: round(v / args.images * 1000, 1) for k, v in seconds.items()},
    }
    for method, preds in fused.items():
        report["miou"][f"tta_{method}"] = round(mean_iou(np.stack(preds), truth_all, classes)[0], 4)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
