"""Augmentation throughput: the five variants of 256x256 images, in-process and through the service.

    python -m bench.augment [--images 60]

(a) in-process: `transforms.apply` + PNG encode for all five variants, one core;
(b) the augment service: a dataset-expansion job of the same images over HTTP, bus and object
    store, from the request to the `expanded` event (starts its own embedded stack).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np

from maskline.client import JsonClient
from maskline.contracts.common_v1 import ALL_VARIANTS
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from maskline.shared.config import load
from maskline.shared.images import transforms
from maskline.shared.images.codec import encode_png


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    images = [shapes.sample(rng, size=256) for _ in range(args.images)]
    chosen = transforms.variants(ALL_VARIANTS, angle=15.0, sigma=1.0)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for image, mask in images:
            for v in chosen:
                encode_png(transforms.apply(v, image))
                encode_png(transforms.apply(v, mask, nearest=True))
        runs.append(args.images / (time.perf_counter() - started))
    in_process = statistics.median(runs)

    settings = on_free_ports(
        load(StackSettings), tempfile.mkdtemp(prefix="maskline-bench-"), log_level="warning", api_keys="dev-key:bench"
    )
    stack = Stack(settings)
    stack.up()
    try:
        client = JsonClient(stack.gateway_url)
        for i, (image, mask) in enumerate(images):
            client.upload_dataset_file("bench", "images", encode_png(image), f"i{i}.png")
            client.upload_dataset_file("bench", "masks", encode_png(mask), f"i{i}.png")
        service_runs = []
        for run in range(3):
            started = time.perf_counter()
            job = client.wait_job(client.expand_dataset("bench", target=f"bench-out{run}")["id"], timeout=600)
            assert job["status"] == "completed", job
            service_runs.append(args.images / (time.perf_counter() - started))
    finally:
        stack.down()
    print(
        json.dumps(
            {
                "images": args.images,
                "size": "256x256 + mask",
                "variants": 5,
                "in_process_images_per_s": round(in_process, 1),
                "service_images_per_s_runs": [round(r, 1) for r in service_runs],
                "service_images_per_s_median": round(statistics.median(service_runs), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
