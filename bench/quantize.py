"""Benchmark: FP32 vs HYBRID vs INT8 of the starter model, made by the quantize service, served by Triton.

    python -m bench.quantize [--requests 300] [--concurrency 1,4] [--held-out 256] [--out docs/bench/quantize.json]

One run, one embedded stack: calibrate on 64 generated images through the quantize service
(every calibrator, INT8; the best one also as HYBRID), then
- mIoU against ground truth on the held-out set the starter model was evaluated on, per version;
- latency and throughput of each version through Triton directly (same image, same client);
- model size (the TorchScript file Triton loads).
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
import torch
import tritonclient.http.aio as triton_http
from PIL import Image
from tritonclient.http import InferInput, InferRequestedOutput

from bench.pipeline import run_load
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from maskline.models.starter.train import HELD_OUT_SEED, mean_iou
from maskline.services.infer.triton import uncompressed_headers
from maskline.shared.config import load

MODEL = "shapes-unet"
OWNER = "maskline"
#: The platform's public starter model; the quantized versions belong to the bench's tenant.
PARENT = {"name": MODEL, "version": 1, "owner": OWNER}
METHODS = ("minmax", "entropy", "log2", "percentile")


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def held_out_miou(weights: Path, images: torch.Tensor, masks: np.ndarray) -> float:
    torch.backends.quantized.engine = "x86"
    module = torch.jit.load(str(weights), map_location="cpu").eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(images), 32):
            out = module(images[i : i + 32])
            preds.append((out.dequantize() if out.is_quantized else out).argmax(1).numpy())
    miou, _ = mean_iou(np.concatenate(preds), masks, len(shapes.LABELS))  # as the starter's manifest reports it
    return round(float(miou), 4)


def in_process_ms(weights: Path, example: torch.Tensor, runs: int = 50) -> float:
    """Median batch-1 latency of the TorchScript file in this process on one thread (kernels only)."""
    torch.backends.quantized.engine = "x86"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    module = torch.jit.load(str(weights), map_location="cpu").eval()
    times = []
    with torch.inference_mode():
        for i in range(runs + 5):
            started = time.perf_counter()
            module(example)
            if i >= 5:
                times.append((time.perf_counter() - started) * 1000)
    torch.set_num_threads(threads)
    return round(statistics.median(times), 2)


def quantize_all(http: httpx.Client, calibration: str) -> dict[str, dict[str, Any]]:
    versions: dict[str, dict[str, Any]] = {}
    jobs = {f"int8-{m}": {"method": m, "precision": "int8"} for m in METHODS}
    for label, options in jobs.items():
        versions[label] = run_job(
            http, {"model": {"name": MODEL, "version": 1, "owner": OWNER}, "dataset": calibration, **options}
        )
    return versions


def run_job(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    job = http.post("/v1/models/quantizations", json=body).raise_for_status().json()
    while job["status"] not in ("completed", "failed"):
        job = http.get(f"/v1/jobs/{job['id']}").raise_for_status().json()
    if job["status"] != "completed":
        raise RuntimeError(f"quantization failed: {job['error']}")
    return dict(http.get(job["links"]["model"]).raise_for_status().json())


async def triton_load(
    triton_url: str, versions: dict[str, tuple[str, int]], tensor: np.ndarray, requests: int, levels: list[int], rounds: int
) -> dict[str, dict[str, Any]]:
    """Throughput and latency of each version, interleaved: every round runs every version in turn,
    so a slow patch of the (shared, 2-core) machine hits all of them alike; medians over rounds."""
    client = triton_http.InferenceServerClient(triton_url)

    def caller(model: tuple[str, int]) -> Any:
        name, version = model

        async def call() -> None:
            inp = InferInput("image", list(tensor.shape), "FP32")
            inp.set_data_from_numpy(tensor, binary_data=True)
            outputs = [InferRequestedOutput("probs", binary_data=True)]
            result = await client.infer(name, [inp], model_version=str(version), outputs=outputs, headers=uncompressed_headers())
            assert result.as_numpy("probs") is not None

        return call

    calls = {label: caller(v) for label, v in versions.items()}
    for call in calls.values():
        for _ in range(20):
            await call()
    results: dict[str, dict[str, Any]] = {label: {} for label in versions}
    for level in levels:
        samples: dict[str, list[dict[str, float]]] = {label: [] for label in versions}
        for _ in range(rounds):
            for label, call in calls.items():
                samples[label].append(await run_load(call, requests // rounds, level))
        for label, runs in samples.items():
            results[label][f"concurrency_{level}"] = {
                "requests": sum(r["requests"] for r in runs),
                "throughput_rps": round(statistics.median(r["throughput_rps"] for r in runs), 2),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
                "p95_ms": round(statistics.median(r["p95_ms"] for r in runs), 2),
                "rounds": rounds,
            }
    await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--held-out", type=int, default=256)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per concurrency level")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    levels = [int(v) for v in args.concurrency.split(",")]
    home = tempfile.mkdtemp(prefix="maskline-bench-quantize-")
    settings = on_free_ports(load(StackSettings), home, log_level="warning")
    stack = Stack(settings)
    stack.up()
    try:
        http = httpx.Client(base_url=stack.gateway_url, headers={"Authorization": "Bearer dev-key"}, timeout=600)
        rng = np.random.default_rng(2024)
        for i in range(args.calibration):
            body = png(shapes.sample(rng, 128)[0])
            http.put(
                f"/v1/datasets/qbench/images/c{i:03d}.png", content=body, headers={"Content-Type": "image/png"}
            ).raise_for_status()
        platform_v1 = http.get(f"/v1/models/{MODEL}/1", params={"owner": OWNER}).raise_for_status().json()
        versions = {"fp32": platform_v1, **quantize_all(http, "qbench")}
        pixels, masks = shapes.batch(np.random.default_rng(HELD_OUT_SEED), args.held_out)
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
        objects = Path(home) / "objects"
        quality = {label: held_out_miou(objects / v["weights"]["key"], images, masks) for label, v in versions.items()}
        best = max(METHODS, key=lambda m: quality[f"int8-{m}"])
        versions["hybrid"] = run_job(
            http,
            {"model": {"name": MODEL, "version": 1, "owner": OWNER}, "dataset": "qbench", "method": best, "precision": "hybrid"},
        )
        quality["hybrid"] = held_out_miou(objects / versions["hybrid"]["weights"]["key"], images, masks)
        tensor = np.ascontiguousarray(images[:1].numpy())
        sample = png(pixels[0])
        # Triton's model name is `<owner>.<name>` (infer/repository.py: two tenants never share a folder).
        served = {
            label: (f"{versions[label]['owner']}.{MODEL}", versions[label]["version"])
            for label in ("fp32", "hybrid", f"int8-{best}")
        }
        for label in served:
            v = versions[label]
            # One request through the gateway makes infer write the version into Triton's repository and load it.
            http.post(
                "/v1/segmentations",
                params={"wait": 60},
                files={"image": ("s.png", sample, "image/png")},
                data={"version": str(v["version"]), "owner": v["owner"]},
            ).raise_for_status()
        kernels = {label: in_process_ms(objects / versions[label]["weights"]["key"], images[:1]) for label in served}
        triton_url = f"127.0.0.1:{settings.triton_http_port}"
        speed = asyncio.run(triton_load(triton_url, served, tensor, args.requests, levels, args.rounds))
    finally:
        stack.down()
    fp32 = speed["fp32"]
    rows = []
    for label, v in versions.items():
        row: dict[str, Any] = {
            "version": v["version"],
            "precision": v["precision"],
            "method": (v.get("quantization") or {}).get("method"),
            "held_out_miou": quality[label],
            "miou_drop_points": round((quality["fp32"] - quality[label]) * 100, 2),
            "size_bytes": v["weights"]["size"],
        }
        if label in kernels:
            row["in_process_1_thread_ms"] = kernels[label]
            row["in_process_speedup"] = round(kernels["fp32"] / kernels[label], 2)
        if label in speed:
            for key, r in speed[label].items():
                row[key] = {**r, "throughput_vs_fp32": round(r["throughput_rps"] / fp32[key]["throughput_rps"], 3)}
        rows[len(rows) :] = [{"label": label, **row}]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, torch {torch.__version__}",
        "model": f"{MODEL} v1 (128x128 input), held-out {args.held_out} images (seed {HELD_OUT_SEED})",
        "calibration": f"{args.calibration} generated images (seed 2024) through the quantize service",
        "best_calibrator": best,
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    print(markdown(report, levels))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


def markdown(report: dict[str, Any], levels: list[int]) -> str:
    head = "| version | precision | calibrator | held-out mIoU | drop (points) | size KB | 1-thread ms (speed-up) |"
    head += "".join(f" c={c} req/s | c={c} p50 ms | c={c} vs FP32 |" for c in levels)
    lines = [head, "|" + "---|" * (7 + 3 * len(levels))]
    for r in report["rows"]:
        line = f"| {r['label']} (v{r['version']}) | {r['precision']} | {r['method'] or '-'} | {r['held_out_miou']} "
        line += f"| {r['miou_drop_points']} | {round(r['size_bytes'] / 1024)} |"
        line += f" {r['in_process_1_thread_ms']} ({r['in_process_speedup']}x) |" if "in_process_1_thread_ms" in r else " |"
        for c in levels:
            s = r.get(f"concurrency_{c}")
            line += f" {s['throughput_rps']} | {s['p50_ms']} | {s['throughput_vs_fp32']}x |" if s else " | | |"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
