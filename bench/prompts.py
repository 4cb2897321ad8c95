"""Benchmark: promptable segmentation on the bundled path, through the gateway of an embedded stack.

    python -m bench.prompts [--images 64] [--repeats 20] [--out docs/bench/prompts.json]

Quality: the starter's held-out shapes (the seed and 128 px of its training script), one box per
shape (each connected part of a class, at least 30 px), every shape of an image as one job's
objects: IoU of each object's mask with its shape, averaged (mIoU), beside the starter's own mask
of that class inside the same box (what the box adds to the plain model). The person photos of
MediaPipe's reference (`.venv-reference`): one box around MediaPipe's mask, IoU with it, beside the
person model's own mask.

Latency: the first prompt on an image (its embedding is made: the model on Triton) and the
following ones (the embedding kept: only the decoder), `wait` jobs through the gateway at
concurrency 1 asking for every output (mask, overlay, regions), the request's whole time (the
mask's download not included), p50 and p90, for a shapes image (256 px) and the astronaut (512 px)
on the bundled path, and the shapes image with the tiny SAM pair (`maskline.models.sam`, 256 px).
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

import cv2
import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from maskline.client import JsonClient
from maskline.contracts import model_v1
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models import person, sam
from maskline.models.starter import shapes
from maskline.models.starter.train import HELD_OUT_SEED
from maskline.shared.config import load
from maskline.shared.images.codec import encode_png
from tests.models.reference import mediapipe_masks

MIN_SHAPE = 30
#: What the latency runs ask for: every output, as a client that names none gets.
ALL_OUTPUTS = "mask,overlay,regions"
#: A finished job, its mask, and the milliseconds the request took.
Answer = tuple[dict[str, Any], NDArray[np.uint8], float]


def parts_of(mask: NDArray[np.uint8]) -> list[tuple[int, NDArray[np.bool_]]]:
    found = []
    for class_id in range(1, len(shapes.LABELS)):
        count, components = cv2.connectedComponents((mask == class_id).astype(np.uint8))
        found += [(class_id, components == k) for k in range(1, count) if (components == k).sum() >= MIN_SHAPE]
    return found


def box(pixels: NDArray[np.bool_]) -> list[int]:
    ys, xs = np.nonzero(pixels)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def segment(http: httpx.Client, image: bytes, **form: str) -> Answer:
    started = time.perf_counter()
    job = (
        http.post("/v1/segmentations", params={"wait": 60}, files={"image": ("i.png", image, "image/png")}, data=form)
        .raise_for_status()
        .json()
    )
    elapsed = (time.perf_counter() - started) * 1000
    if job["status"] != "completed":
        raise RuntimeError(job)
    mask = np.asarray(Image.open(io.BytesIO(http.get(f"/v1/segmentations/{job['id']}/mask").raise_for_status().content)))
    return job, mask, elapsed


def prompted(http: httpx.Client, image: bytes, boxes: list[list[int]], model: str, outputs: str = "mask") -> Answer:
    prompts = {"objects": [{"box": b} for b in boxes]}
    return segment(http, image, model=model, prompts=json.dumps(prompts), outputs=outputs)


def shapes_quality(http: httpx.Client, images: int) -> dict[str, Any]:
    rng = np.random.default_rng(HELD_OUT_SEED)
    prompted_ious, model_ious = [], []
    for _ in range(images):
        image, truth = shapes.sample(rng, 128)
        parts = parts_of(truth)
        if not parts:
            continue
        body = encode_png(image)
        _, plain, _ = segment(http, body, model="shapes-unet", outputs="mask")
        _, answer, _ = prompted(http, body, [box(p) for _, p in parts], "shapes-unet")
        for index, (class_id, pixels) in enumerate(parts, start=1):
            x0, y0, x1, y1 = box(pixels)
            inside = np.zeros_like(pixels)
            inside[y0:y1, x0:x1] = True
            prompted_ious.append(iou(answer == index, pixels))
            model_ious.append(iou((plain == class_id) & inside, pixels))
    return {
        "images": images,
        "shapes": len(prompted_ious),
        "miou_one_box_per_shape": round(statistics.mean(prompted_ious), 4),
        "miou_starter_mask_in_the_box": round(statistics.mean(model_ious), 4),
    }


def photo_quality(http: httpx.Client, home: Path) -> dict[str, Any]:
    found = {}
    for name, (image, expected) in mediapipe_masks(home).items():
        body = encode_png(np.ascontiguousarray(image))
        _, plain, _ = segment(http, body, model="person-selfie", outputs="mask")
        _, answer, _ = prompted(http, body, [box(expected)], "person-selfie")
        found[name] = {
            "iou_one_box": round(iou(answer == 1, expected), 4),
            "iou_person_model": round(iou(plain == 1, expected), 4),
        }
    return found


def latency(http: httpx.Client, image: NDArray[np.uint8], model: str, repeats: int) -> dict[str, float]:
    """Each repeat a new image (a pixel changed: a new embedding), one first prompt, three following."""
    height, width = image.shape[:2]
    boxes = [
        [width // 8, height // 8, width * 7 // 8, height * 7 // 8],
        [0, 0, width // 2, height // 2],
        [width // 2, height // 2, width, height],
        [width // 4, 0, width * 3 // 4, height],
    ]
    first, following = [], []
    for i in range(repeats):
        variant = image.copy()
        variant[0, 0] = (i % 256, i // 256 % 256, 7)
        body = encode_png(variant)
        first.append(prompted(http, body, [boxes[0]], model, ALL_OUTPUTS)[2])
        following += [prompted(http, body, [b], model, ALL_OUTPUTS)[2] for b in boxes[1:]]

    def pct(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)), 1)

    return {
        "first_p50_ms": pct(first, 50),
        "first_p90_ms": pct(first, 90),
        "following_p50_ms": pct(following, 50),
        "following_p90_ms": pct(following, 90),
    }


def tiny_sam(stack: Stack, home: Path) -> str:
    """The tiny Segment-Anything pair (maskline.models.sam), registered and released: its name."""
    client = JsonClient(stack.gateway_url, api_key="dev-key")
    encoder, decoder = sam.export(home / "tiny-sam")
    side = (sam.IMAGE_SIZE, sam.IMAGE_SIZE)
    model = client.register_model(
        encoder,
        decoder=decoder,
        name="tiny-sam",
        labels=["background", "object"],
        input_size=side,
        format="sam",
        preprocessing=model_v1.SAM_PREPROCESSING,
    )
    client.release_model("tiny-sam", model["version"])
    return "tiny-sam"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="maskline-bench-prompts-")
    stack = Stack(on_free_ports(load(StackSettings), home, log_level="warning"))
    stack.up()
    try:
        http = httpx.Client(base_url=stack.gateway_url, headers={"Authorization": "Bearer dev-key"}, timeout=120)
        astronaut = np.asarray(Image.open(person.FOLDER / "samples" / "astronaut.jpg").convert("RGB"))
        shape_image = shapes.sample(np.random.default_rng(5), 256)[0]
        prompted(http, encode_png(shape_image), [[10, 10, 100, 100]], "shapes-unet")  # warm
        report = {
            "command": "python -m bench.prompts "
            + " ".join(f"--{k} {v}" for k, v in (("images", args.images), ("repeats", args.repeats))),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "shapes_held_out": shapes_quality(http, args.images),
            "person_photos": photo_quality(http, Path(home)),
            "latency_shapes_256": latency(http, shape_image, "shapes-unet", args.repeats),
            "latency_astronaut_512": latency(http, astronaut, "person-selfie", args.repeats),
            "latency_tiny_sam_256": latency(http, shape_image, tiny_sam(stack, Path(home)), args.repeats),
        }
    finally:
        stack.down()
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
