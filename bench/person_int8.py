"""Benchmark: the bundled person model (ONNX) FP32 vs its INT8 QDQ versions, served by Triton.

    python -m bench.person_int8 [--requests 200] [--concurrency 1,4] [--rounds 5] [--out docs/bench/person-int8-0.2.json]

One embedded stack. Calibration: 6 views (crops, flips, half size) of the bundled astronaut photo,
through the quantize service, once per calibrator (INT8) and the best one also as HYBRID. Quality:
the masks the stack returns for real photos of people the calibration never saw (scikit-image's
`camera`, matplotlib's `grace_hopper`, and a crop and a flip of them), as mean IoU against
MediaPipe's own masks (run in `.venv-reference`, which `./dev test` makes) and against FP32's.
Speed: throughput and latency of each version through Triton directly, interleaved rounds, medians.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
from numpy.typing import NDArray
from PIL import Image

from bench.quantize import run_job, triton_load
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models import person
from maskline.shared.config import load
from maskline.shared.images.codec import encode_png, to_model_input
from tests.models.reference import mediapipe_masks, miou

MODEL, OWNER = "person-selfie", "maskline"
METHODS = ("minmax", "entropy", "log2", "percentile")
EVALUATION = ("camera", "grace_hopper", "camera_landscape", "grace_hopper_flipped")


def calibration_views() -> list[bytes]:
    image = np.asarray(Image.open(person.FOLDER / "samples" / "astronaut.jpg").convert("RGB"))
    views = [image, image[:, ::-1], image[:400, 50:450], image[100:, :400], image[::2, ::2], image[:, 60:460][:, ::-1]]
    return [encode_png(np.ascontiguousarray(v)) for v in views]


def served_mask(http: httpx.Client, image: NDArray[np.uint8], version: dict[str, Any]) -> NDArray[np.bool_]:
    job = (
        http.post(
            "/v1/segmentations",
            params={"wait": 60},
            files={"image": ("p.png", encode_png(image), "image/png")},
            data={"model": version["name"], "version": str(version["version"]), "owner": version["owner"]},
        )
        .raise_for_status()
        .json()
    )
    mask = http.get(f"/v1/segmentations/{job['id']}/mask").raise_for_status().content
    return np.asarray(np.asarray(Image.open(io.BytesIO(mask))) == 1, dtype=np.bool_)


def in_process_ms(path: Path, example: NDArray[np.float32], runs: int = 50) -> float:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    times = []
    for i in range(runs + 5):
        started = time.perf_counter()
        session.run(None, {session.get_inputs()[0].name: example})
        if i >= 5:
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    levels = [int(v) for v in args.concurrency.split(",")]
    home = tempfile.mkdtemp(prefix="maskline-bench-person-")
    photos = mediapipe_masks(Path(home))
    stack = Stack(on_free_ports(load(StackSettings), home, log_level="warning"))
    stack.up()
    try:
        http = httpx.Client(base_url=stack.gateway_url, headers={"Authorization": "Bearer dev-key"}, timeout=600)
        for i, body in enumerate(calibration_views()):
            http.put(
                f"/v1/datasets/people/images/p{i}.png", content=body, headers={"Content-Type": "image/png"}
            ).raise_for_status()
        fp32 = http.get(f"/v1/models/{MODEL}/1", params={"owner": OWNER}).raise_for_status().json()
        versions: dict[str, dict[str, Any]] = {"fp32": fp32}
        parent = {"name": MODEL, "version": 1, "owner": OWNER}
        for method in METHODS:
            versions[f"int8-{method}"] = run_job(http, {"model": parent, "dataset": "people", "method": method, "max_images": 6})
        masks = {label: {n: served_mask(http, photos[n][0], v) for n in EVALUATION} for label, v in versions.items()}
        quality = {
            label: {
                "miou_vs_mediapipe": round(float(np.mean([miou(m[n], photos[n][1]) for n in EVALUATION])), 4),
                "miou_vs_fp32": round(float(np.mean([miou(m[n], masks["fp32"][n]) for n in EVALUATION])), 4),
            }
            for label, m in masks.items()
        }
        best = max(METHODS, key=lambda m: quality[f"int8-{m}"]["miou_vs_mediapipe"])
        versions["hybrid"] = run_job(
            http, {"model": parent, "dataset": "people", "method": best, "precision": "hybrid", "max_images": 6}
        )
        hybrid = {n: served_mask(http, photos[n][0], versions["hybrid"]) for n in EVALUATION}
        quality["hybrid"] = {
            "miou_vs_mediapipe": round(float(np.mean([miou(hybrid[n], photos[n][1]) for n in EVALUATION])), 4),
            "miou_vs_fp32": round(float(np.mean([miou(hybrid[n], masks["fp32"][n]) for n in EVALUATION])), 4),
        }
        tensor = np.ascontiguousarray(to_model_input(encode_png(photos["camera"][0]), (256, 256)))
        served = {
            label: (f"{versions[label]['owner']}.{versions[label]['name']}", versions[label]["version"])
            for label in ("fp32", f"int8-{best}", "hybrid")
        }
        objects = Path(home) / "objects"
        kernels = {label: in_process_ms(objects / versions[label]["weights"]["key"], tensor) for label in served}
        speed = asyncio.run(
            triton_load(f"127.0.0.1:{stack.settings.triton_http_port}", served, tensor, args.requests, levels, args.rounds)
        )
    finally:
        stack.down()
    rows = []
    for label, v in versions.items():
        row: dict[str, Any] = {"label": label, "version": v["version"], "precision": v["precision"], **quality[label]}
        row["miou_drop_points_vs_mediapipe"] = round(
            (quality["fp32"]["miou_vs_mediapipe"] - quality[label]["miou_vs_mediapipe"]) * 100, 2
        )
        row["size_bytes"] = v["weights"]["size"]
        if label in kernels:
            row["in_process_ms"] = kernels[label]
            row["in_process_speedup"] = round(kernels["fp32"] / kernels[label], 2)
        for key, r in speed.get(label, {}).items():
            row[key] = {**r, "throughput_vs_fp32": round(r["throughput_rps"] / speed["fp32"][key]["throughput_rps"], 3)}
        rows.append(row)
    report = {
        "command": f"python -m bench.person_int8 --requests {args.requests} --concurrency {args.concurrency} "
        f"--rounds {args.rounds}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}",
        "model": "person-selfie v1 (ONNX, 256x256), MediaPipe's selfie segmentation converted",
        "evaluation": list(EVALUATION),
        "best_calibrator": best,
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
