"""Benchmark: what one request costs Triton beside the network itself — the bundled person model,
FP32 and INT8 (QDQ, minmax ranges from two views of the astronaut), in a tritonserver of its own.

    python -m bench.serving_cost [--requests 150] [--rounds 3] [--threads 1] [--instances 2] [--queue-delay-us 0,2000]

For each dynamic-batching delay: the same repository layout infer writes (Python backend, ONNX
Runtime), every version loaded, then per concurrency level the versions take turns, `--rounds`
times, and medians are kept: requests per second, Triton's CPU per request (its process tree, from
/proc), and Triton's own statistics per request (queue, compute_input/infer/output). In-process:
ONNX Runtime with the same thread count, batch 1, median of 60. The gap between `compute_infer`
and the in-process time, and between Triton's CPU and `compute_infer`, is the serving cost that
an int8 kernel cannot shrink.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import tritonclient.http.aio as triton_http
from numpy.typing import NDArray
from tritonclient.http import InferInput, InferRequestedOutput

from bench.cpu import cpu_seconds
from bench.pipeline import run_load
from maskline.contracts.model_v1 import ModelVersion
from maskline.infra.embedded.process import free_port, stop_pid
from maskline.infra.embedded.triton import start_triton
from maskline.models import person
from maskline.services.infer.repository import version_files, write_version
from maskline.services.infer.triton import uncompressed_headers
from maskline.services.quantize import onnx_qdq
from maskline.shared.images.codec import to_model_input
from maskline.shared.storage import make_ref

STATS = ("queue", "compute_input", "compute_infer", "compute_output")


def versions(photo: NDArray[np.float32]) -> dict[str, bytes]:
    fp32 = person.ONNX.read_bytes()
    model = onnx_qdq.load(fp32)
    observed = onnx_qdq.observe(model, [photo, np.ascontiguousarray(photo[..., ::-1])])
    plan = onnx_qdq.Plan("int8", per_channel=True, keep_float=onnx_qdq.output_head(model))
    return {"fp32": fp32, "int8": onnx_qdq.quantize(model, onnx_qdq.ranges(observed, "minmax", 99.99), plan)}


def in_process_ms(weights: bytes, photo: NDArray[np.float32], threads: int, runs: int = 60) -> float:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(weights, options, providers=["CPUExecutionProvider"])
    for _ in range(10):
        session.run(None, {"image": photo})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, {"image": photo})
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)


async def serve(
    port: int, pid: int, names: list[str], photo: NDArray[np.float32], requests: int, levels: list[int], rounds: int
) -> dict[str, dict[str, Any]]:
    client = triton_http.InferenceServerClient(f"127.0.0.1:{port}")

    def caller(name: str) -> Any:
        async def call() -> None:
            image = InferInput("image", list(photo.shape), "FP32")
            image.set_data_from_numpy(photo, binary_data=True)
            outputs = [InferRequestedOutput("probs", binary_data=True)]
            await client.infer(name, [image], model_version="1", outputs=outputs, headers=uncompressed_headers())

        return call

    async def stats(name: str) -> dict[str, tuple[int, int]]:
        reply = await client.get_inference_statistics(name)
        found = reply["model_stats"][0]["inference_stats"]
        return {key: (int(found[key]["count"]), int(found[key]["ns"])) for key in STATS}

    for name in names:
        await client.load_model(name)  # explicit model control, as infer runs Triton
    calls = {name: caller(name) for name in names}
    for call in calls.values():
        for _ in range(20):
            await call()
    results: dict[str, dict[str, Any]] = {name: {} for name in names}
    for level in levels:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for _ in range(rounds):
            for name, call in calls.items():
                before, cpu_before = await stats(name), cpu_seconds({"triton": pid})["triton"]
                load = await run_load(call, requests, level)
                after, cpu_after = await stats(name), cpu_seconds({"triton": pid})["triton"]
                per_request = {
                    f"{key}_ms": (after[key][1] - before[key][1]) / max(1, after[key][0] - before[key][0]) / 1e6 for key in STATS
                }
                runs[name].append({**load, "triton_cpu_ms": (cpu_after - cpu_before) * 1000 / requests, **per_request})
        for name, samples in runs.items():
            keys = [k for k in samples[0] if k != "requests"]
            results[name][f"concurrency_{level}"] = {k: round(statistics.median(s[k] for s in samples), 2) for k in keys}
    await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per instance (the stack's default)")
    parser.add_argument("--instances", type=int, default=2, help="Triton instances per version (the stack's default)")
    parser.add_argument("--queue-delay-us", default="0,2000")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    photo = to_model_input((person.FOLDER / "samples" / "astronaut.jpg").read_bytes(), (256, 256))
    built = versions(photo)
    report: dict[str, Any] = {
        "command": f"python -m bench.serving_cost --requests {args.requests} --concurrency {args.concurrency} "
        f"--rounds {args.rounds} --threads {args.threads} --instances {args.instances} --queue-delay-us {args.queue_delay_us}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}",
        "in_process_ms": {name: in_process_ms(weights, photo, args.threads) for name, weights in built.items()},
        "serving": {},
    }
    for delay in (int(d) for d in args.queue_delay_us.split(",")):
        with tempfile.TemporaryDirectory(prefix="maskline-serving-") as folder:
            home = Path(folder)
            for name, weights in built.items():
                version = ModelVersion(
                    name=name,
                    version=1,
                    labels=person.LABELS,
                    input_size=(256, 256),
                    weights=make_ref(f"models/{name}/1/model.onnx", weights, "application/octet-stream"),
                    format="onnx",
                )
                layout = {"kind": "KIND_CPU", "instances": args.instances, "max_batch": 8, "queue_delay_us": delay}
                write_version(home / "repository", version_files(version, weights, **layout))
            port = free_port()
            proc = start_triton(home, home / "repository", port, free_port(), free_port(), torch_threads=args.threads)
            try:
                served = asyncio.run(serve(port, proc.pid, list(built), photo, args.requests, levels, args.rounds))
            finally:
                stop_pid(proc.pid)
        report["serving"][f"queue_delay_us_{delay}"] = served
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
