"""Benchmark: maskline's whole gateway → NATS → ingest → infer → merge path against two baselines
measured in the same run: (a) Triton called directly, and (d) what a user would write instead of
maskline, one litestar process that calls the same Triton and renders the same three outputs to
disk with no bus (bench/baseline.py).

    python -m bench.pipeline [--requests 200] [--concurrency 1,4] [--url http://...]

Starts its own embedded stack on free ports (unless --url is given), uses the same model and the
same image for every path, and prints medians, p95, ratios and CPU milliseconds per job of each
process (read from /proc, descendants included: bench/cpu.py) as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import tritonclient.http.aio as triton_http
from tritonclient.http import InferInput, InferRequestedOutput

from bench import null_model
from bench.cpu import cpu_seconds, per_job_ms
from maskline.client import JsonClient
from maskline.infra.embedded.process import free_port, wait_until
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.services.infer.triton import uncompressed_headers
from maskline.shared.config import load
from maskline.shared.images.codec import to_model_input

MODEL = "shapes-unet"
TRITON_NAME = f"maskline.{MODEL}"  # Triton's name for the platform's model: `<owner>.<name>`


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / wall, 2),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
    }


async def run_load(call: Any, requests: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - started)


Pids = Callable[[], dict[str, int]]
#: Messages each program has sent to nats-server so far (its connections' `in_msgs` on /connz).
Sent = Callable[[], dict[str, int]]


def connz_sent(monitor_url: str) -> dict[str, int]:
    """Program → messages its connections sent to the server (publishes, acks, pull requests,
    key-value reads and writes, replies): what the bus handles for it."""
    conns = httpx.get(f"{monitor_url}/connz", params={"limit": 4096}, timeout=10).json().get("connections", [])
    sent: dict[str, int] = {}
    for conn in conns:
        program = (conn.get("name") or "unnamed").split(":", 1)[0]
        sent[program] = sent.get(program, 0) + int(conn.get("in_msgs", 0))
    return sent


async def measured(call: Any, requests: int, level: int, pids: Pids | None, sent: Sent | None = None) -> dict[str, Any]:
    """The load's summary, with the CPU milliseconds per job of each process when `pids` is known,
    and the bus messages each program sent per job when `sent` is."""
    before = cpu_seconds(pids()) if pids else {}
    messages_before = sent() if sent else {}
    result: dict[str, Any] = await run_load(call, requests, level)
    if pids:
        spent = per_job_ms(before, cpu_seconds(pids()), requests)
        spent["outside_triton"] = round(spent["total"] - spent.get("triton", 0.0), 2)
        result["cpu_ms_per_job"] = spent
    if sent:
        after = sent()
        per_job = {p: round((n - messages_before.get(p, 0)) / requests, 2) for p, n in after.items() if p != "bench"}
        per_job = {p: v for p, v in per_job.items() if v > 0}
        result["bus_messages_per_job"] = {
            **dict(sorted(per_job.items(), key=lambda kv: -kv[1])),
            "total": round(sum(per_job.values()), 2),
        }
    return result


async def bench(
    gateway: str,
    triton_url: str,
    api_key: str,
    image: bytes,
    requests: int,
    levels: list[int],
    tta: bool = False,
    baseline_url: str | None = None,
    stack_pids: Pids | None = None,
    baseline_pids: Pids | None = None,
    sent: Sent | None = None,
    model: str = MODEL,
    triton_name: str = TRITON_NAME,
    input_size: tuple[int, int] = (128, 128),
) -> dict[str, Any]:
    tensor = to_model_input(image, input_size)
    triton = triton_http.InferenceServerClient(triton_url)
    http = httpx.AsyncClient(base_url=gateway, headers={"Authorization": f"Bearer {api_key}"}, timeout=120)
    plain = httpx.AsyncClient(base_url=baseline_url or gateway, timeout=120)

    async def direct() -> None:
        inp = InferInput("image", list(tensor.shape), "FP32")
        inp.set_data_from_numpy(tensor, binary_data=True)
        outputs = [InferRequestedOutput("probs", binary_data=True)]
        result = await triton.infer(triton_name, [inp], model_version="1", outputs=outputs, headers=uncompressed_headers())
        assert result.as_numpy("probs") is not None

    form = {"model": model} if model != MODEL else {}

    async def pipeline() -> None:
        response = await http.post(
            "/v1/segmentations", params={"wait": 60}, files={"image": ("s.png", image, "image/png")}, data=form
        )
        assert response.status_code == 200 and response.json()["status"] == "completed", response.text

    async def pipeline_tta() -> None:
        response = await http.post(
            "/v1/segmentations", params={"wait": 60}, files={"image": ("s.png", image, "image/png")}, data={"tta": "true"}
        )
        assert response.status_code == 200 and response.json()["status"] == "completed", response.text

    async def baseline() -> None:
        response = await plain.post("/segment", files={"data": ("s.png", image, "image/png")})
        assert response.status_code == 201 and response.json()["status"] == "completed", response.text

    await pipeline()  # the platform loads the model into Triton on its first job
    for _ in range(10):  # warm every path
        await direct()
        await pipeline()
        if baseline_url:
            await baseline()
    results: dict[str, Any] = {}
    for level in levels:
        a = await run_load(direct, requests, level)
        b = await measured(pipeline, requests, level, stack_pids, sent)
        row: dict[str, Any] = {
            "triton_direct": a,
            "pipeline": b,
            "throughput_ratio": round(b["throughput_rps"] / a["throughput_rps"], 3),
            "added_p50_ms": round(b["p50_ms"] - a["p50_ms"], 2),
        }
        if baseline_url:
            d = await measured(baseline, requests, level, baseline_pids)
            row["baseline"] = d
            row["ratio_to_baseline"] = round(b["throughput_rps"] / d["throughput_rps"], 3)
            row["baseline_ratio_to_triton"] = round(d["throughput_rps"] / a["throughput_rps"], 3)
            row["added_p50_ms_vs_baseline"] = round(b["p50_ms"] - d["p50_ms"], 2)
        if tta:
            c = await run_load(pipeline_tta, max(requests // 5, 20), level)
            row["pipeline_tta"] = c
            row["tta_throughput_vs_pipeline"] = round(c["throughput_rps"] / b["throughput_rps"], 3)
        results[f"concurrency_{level}"] = row
    await triton.close()
    await http.aclose()
    await plain.aclose()
    return results


def start_baseline(triton_url: str, out: str) -> tuple[subprocess.Popen[bytes], str]:
    """The litestar baseline on a free port, as its own process (one uvicorn worker)."""
    port = free_port()
    env = {**os.environ, "BASELINE_TRITON": triton_url, "BASELINE_OUT": out}
    command = [sys.executable, "-m", "uvicorn", "bench.baseline:app", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.post(f"{url}/segment", timeout=2).status_code in (400, 415, 422)
        except httpx.HTTPError:
            return False

    wait_until(answers, 60, what="the baseline app")
    return process, url


def ceiling(results: dict[str, Any]) -> None:
    """With the null model: how many jobs one core of maskline carries, the model's cost taken out."""
    for row in results.values():
        cpu = row["pipeline"].get("cpu_ms_per_job")
        if cpu and cpu["outside_triton"] > 0:
            row["platform_jobs_per_s_per_core"] = round(1000.0 / cpu["outside_triton"], 1)


def markdown(results: dict[str, Any]) -> str:
    lines = ["| concurrency | path | req/s | p50 ms | p95 ms | ratio (b/a) | added p50 ms |", "|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        level = key.split("_")[1]
        a, b = r["triton_direct"], r["pipeline"]
        lines.append(f"| {level} | (a) Triton direct | {a['throughput_rps']} | {a['p50_ms']} | {a['p95_ms']} | | |")
        lines.append(
            f"| {level} | (b) gateway → bus → services | {b['throughput_rps']} | {b['p50_ms']} | {b['p95_ms']} "
            f"| {r['throughput_ratio']} | {r['added_p50_ms']} |"
        )
        if "baseline" in r:
            d = r["baseline"]
            lines.append(
                f"| {level} | (d) baseline: one litestar process, no bus | {d['throughput_rps']} | {d['p50_ms']} | {d['p95_ms']} "
                f"| {r['baseline_ratio_to_triton']} | {round(d['p50_ms'] - a['p50_ms'], 2)} |"
            )
            lines.append(f"| {level} | (b)/(d) | | | | **{r['ratio_to_baseline']}** | {r['added_p50_ms_vs_baseline']} |")
        if "pipeline_tta" in r:
            c = r["pipeline_tta"]
            lines.append(
                f"| {level} | (c) same with TTA (5 variants) | {c['throughput_rps']} | {c['p50_ms']} | {c['p95_ms']} "
                f"| {round(c['throughput_rps'] / a['throughput_rps'], 3)} | {round(c['p50_ms'] - a['p50_ms'], 2)} |"
            )
    for key, r in results.items():
        if "platform_jobs_per_s_per_core" in r:
            lines.append(f"\nPlatform jobs per second per core, {key.replace('_', ' ')}: **{r['platform_jobs_per_s_per_core']}**")
        messages = r["pipeline"].get("bus_messages_per_job")
        if messages:
            ordered = ", ".join(f"{name} {n}" for name, n in messages.items())
            lines.append(f"\nBus messages sent per job, {key.replace('_', ' ')}: {ordered}")
        for path in ("pipeline", "baseline"):
            cpu = r.get(path, {}).get("cpu_ms_per_job")
            if cpu:
                ordered = ", ".join(f"{name} {ms}" for name, ms in sorted(cpu.items(), key=lambda item: -item[1]))
                lines.append(f"\nCPU ms per job, {path}, {key.replace('_', ' ')}: {ordered}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--url", help="an already running gateway (then also give --triton)")
    parser.add_argument("--triton", default="127.0.0.1:8000")
    parser.add_argument("--api-key", default="dev-key")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--tta", action="store_true", help="also run the whole path with test-time augmentation")
    parser.add_argument("--no-baseline", action="store_true", help="skip the litestar baseline (d)")
    parser.add_argument(
        "--null-model",
        action="store_true",
        help="the whole path with a model that answers at once (bench/null_model.py): the platform's own ceiling",
    )
    parser.add_argument("--model", default=MODEL, help="a bundled model to run (the baseline knows shapes-unet only)")
    parser.add_argument("--image", type=Path, help="the image every request sends (default: the starter's shapes-1.png)")
    args = parser.parse_args()
    image = (
        args.image.read_bytes()
        if args.image
        else resources.files("maskline.models.starter").joinpath("samples/shapes-1.png").read_bytes()
    )
    if args.null_model or args.model != MODEL:
        args.no_baseline = True  # the baseline calls the starter model
    levels = [int(v) for v in args.concurrency.split(",")]
    stack = None
    baseline: subprocess.Popen[bytes] | None = None
    if args.url:
        gateway, triton_url = args.url, args.triton
    else:
        home = tempfile.mkdtemp(prefix="maskline-bench-")
        base = load(StackSettings)  # MASKLINE_SYNC_INTERVAL etc. still apply
        settings = on_free_ports(base, home, log_level="warning")
        stack = Stack(settings)
        stack.up()
        gateway, triton_url = stack.gateway_url, f"127.0.0.1:{settings.triton_http_port}"
    try:
        baseline_url = None
        if not args.no_baseline:
            baseline, baseline_url = start_baseline(triton_url, tempfile.mkdtemp(prefix="maskline-baseline-"))
        stack_pids: Pids | None = None
        baseline_pids: Pids | None = None
        sent: Sent | None = None
        if stack is not None:
            monitor = f"http://127.0.0.1:{stack.settings.nats_monitor_port}"
            sent = lambda: connz_sent(monitor)  # noqa: E731
            running = stack
            stack_pids = lambda: running.pids  # noqa: E731
            if baseline is not None:
                pid = baseline.pid
                baseline_pids = lambda: {"baseline": pid, "triton": running.pids["triton"]}  # noqa: E731
        model, triton_name, input_size = args.model, TRITON_NAME, (128, 128)
        with httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {args.api_key}"}, timeout=120) as http:
            if args.null_model:
                with tempfile.TemporaryDirectory() as folder:
                    JsonClient(gateway, api_key=args.api_key).register_model(
                        null_model.weights(Path(folder)),
                        name=null_model.NAME,
                        labels=null_model.LABELS,
                        input_size=null_model.SIZE,
                        output_kind="probabilities",
                    )
                model = null_model.NAME
            found = http.get(f"/v1/models/{model}/1").json()
            triton_name, input_size = f"{found['owner']}.{found['name']}", tuple(found["input_size"])
        results = asyncio.run(
            bench(
                gateway,
                triton_url,
                args.api_key,
                image,
                args.requests,
                levels,
                args.tta,
                baseline_url=baseline_url,
                stack_pids=stack_pids,
                baseline_pids=baseline_pids,
                sent=sent,
                model=model,
                triton_name=triton_name,
                input_size=(int(input_size[0]), int(input_size[1])),
            )
        )
        if args.null_model:
            ceiling(results)
    finally:
        if baseline:
            baseline.terminate()
            baseline.wait(30)
        if stack:
            stack.down()
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "image": args.image.name if args.image else "shapes-1.png 256x256",
        "model": f"{null_model.NAME if args.null_model else args.model} v1",
        "nats_sync_interval": stack.settings.sync_interval if stack else "?",
        "results": results,
    }
    print(json.dumps(report, indent=2))
    print(markdown(results))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
