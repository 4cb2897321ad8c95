"""Aspect-true inference on the starter model's held-out set: stretch vs letterbox vs tiling.

    python -m bench.aspect [--images 256] [--size 256] [--out docs/bench/aspect-0.2.json]

Held-out shapes images (the training's held-out seed, never seen in training) are generated at
`--size` and cropped to a non-square window (landscape and portrait, 1.33:1 to 2:1), so each shape
keeps its true geometry in the crop. Each crop then runs through exactly the platform's path —
`shared.images.prepare` with the declared preprocessing, the committed TorchScript weights (the file
Triton serves), the crop to the content box that infer does, and merge's `mask_at` back to the
crop's own size — and mIoU over the 4 classes is measured against the crop's true mask. Square
images are measured too: there, stretch and letterbox are the same. Large images at the model's own
scale (2 x 3 held-out samples side by side, 256 x 384) compare all three, tiling included.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from maskline.contracts.model_v1 import Preprocessing
from maskline.models import starter
from maskline.models.starter import shapes
from maskline.models.starter.train import HELD_OUT_SEED, mean_iou
from maskline.services.merge.render import mask_at
from maskline.shared.images.codec import encode_png, prepare, stitch

Array = NDArray[Any]
INPUT = (128, 128)
WAYS = {"stretch": Preprocessing(resize="stretch"), "letterbox": Preprocessing(resize="letterbox")}
ALL_WAYS = {**WAYS, "tile": Preprocessing(resize="tile", overlap=0.25)}


def crops(rng: np.random.Generator, n: int, size: int) -> list[tuple[Array, Array]]:
    """Non-square windows of held-out images with their true masks."""
    out = []
    for _ in range(n):
        image, mask = shapes.sample(rng, size=size)
        short = int(size / rng.choice([4 / 3, 1.6, 2.0]))
        offset = int(rng.integers(0, size - short + 1))
        window = np.s_[offset : offset + short, :] if rng.random() < 0.5 else np.s_[:, offset : offset + short]
        out.append((np.ascontiguousarray(image[window]), np.ascontiguousarray(mask[window])))
    return out


def mosaics(rng: np.random.Generator, n: int) -> list[tuple[Array, Array]]:
    """Large images at the model's own scale: 2 x 3 held-out 128-pixel samples side by side (256 x 384)."""
    out = []
    for _ in range(n):
        pairs = [shapes.sample(rng, size=128) for _ in range(6)]
        rows = [np.concatenate([p[i] for p in pairs[r * 3 : r * 3 + 3]], axis=1) for r in range(2) for i in (0, 1)]
        out.append((np.concatenate(rows[0::2]), np.concatenate(rows[1::2])))
    return out


def predict(model: torch.jit.ScriptModule, image: Array, how: Preprocessing) -> Array:
    prepared = prepare(encode_png(image), INPUT, how)
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(prepared.batch)), 1).half().numpy()
    inside = stitch(prepared, probs)
    mask, _ = mask_at(np.ascontiguousarray(inside.transpose(1, 2, 0)), image.shape[1], image.shape[0])
    return mask


def score(model: torch.jit.ScriptModule, pairs: list[tuple[Array, Array]], how: Preprocessing) -> dict[str, object]:
    predicted = np.concatenate([predict(model, image, how).ravel() for image, _ in pairs])
    truth = np.concatenate([mask.ravel() for _, mask in pairs])
    miou, per_class = mean_iou(predicted, truth, len(shapes.LABELS))
    return {"miou": round(miou, 4), "iou_per_class": [round(v, 4) for v in per_class]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model = torch.jit.load(str(starter.WEIGHTS)).eval()  # type: ignore[no-untyped-call]
    started = time.perf_counter()
    non_square = crops(np.random.default_rng(HELD_OUT_SEED), args.images, args.size)
    square = [shapes.sample(rng, size=args.size) for rng in [np.random.default_rng(HELD_OUT_SEED)] for _ in range(args.images)]
    result: dict[str, object] = {
        "command": f"python -m bench.aspect --images {args.images} --size {args.size}",
        "model": "shapes-unet v1 (128x128 input)",
        "non_square": {name: score(model, non_square, how) for name, how in WAYS.items()},
        "square": {name: score(model, square, how) for name, how in WAYS.items()},
        "large_native_scale": {
            name: score(model, mosaics(np.random.default_rng(HELD_OUT_SEED), args.images // 4), how)
            for name, how in ALL_WAYS.items()
        },
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
