"""Benchmark: the cost of one very large image through the whole stack, with and without TTA.

    python -m bench.big_image [--side 6000] [--rounds 3] [--out docs/bench/big-image.json]

Starts its own embedded stack on free ports, submits a `side` x `side` PNG (a few large shapes on
a smooth gradient, so the file is small: the case where work used to scale with the pixels, not
with the upload), and reports per round the wall time of the request (`?wait=`) and the stack's
peak memory above its idle level: the sum of the resident set sizes of every process of the
stack (nats-server, tritonserver and its Python-backend stubs, each service), sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskline.client import JsonClient
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.shared.config import load


def big_png(side: int) -> bytes:
    yy, xx = np.mgrid[0:side, 0:side]
    image = np.zeros((side, side, 3), np.uint8)
    image[..., 0] = (xx * 200 // side).astype(np.uint8)
    image[..., 2] = (yy * 200 // side).astype(np.uint8)
    r = side // 6
    image[((yy - side // 3) ** 2 + (xx - side // 3) ** 2) < r * r] = (240, 30, 30)
    image[side // 2 : side // 2 + 2 * r, side // 2 : side // 2 + 2 * r] = (30, 240, 30)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def descendants(root: int) -> set[int]:
    """Every process whose parent chain leads to one of the stack's processes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def stack_pids(stack: Stack) -> set[int]:
    pids: set[int] = set()
    for pid in stack.pids.values():
        pids |= descendants(pid)
    return pids


def stack_rss_mb(stack: Stack, pids: set[int] | None = None) -> float:
    pids = stack_pids(stack) if pids is None else pids
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class PeakSampler:
    def __init__(self, stack: Stack) -> None:
        self.stack, self.peak, self._stop = stack, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # The process list is taken once (walking /proc every 20 ms would steal a core from the stack).
        pids = stack_pids(self.stack)
        while not self._stop.is_set():
            self.peak = max(self.peak, stack_rss_mb(self.stack, pids))
            time.sleep(0.02)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def one(stack: Stack, client: JsonClient, data: bytes, tta: bool) -> dict[str, float]:
    time.sleep(2.0)  # let the previous round's memory settle
    idle = stack_rss_mb(stack)
    with PeakSampler(stack) as sampler:
        started = time.perf_counter()
        job = client.submit(data, filename="big.png", wait=600, tta=tta or None)
        seconds = time.perf_counter() - started
    assert job["status"] == "completed", job
    return {
        "seconds": round(seconds, 2),
        "idle_mb": round(idle, 1),
        "peak_mb": round(sampler.peak, 1),
        "above_idle_mb": round(sampler.peak - idle, 1),
        **{f"stage_{k}_ms": v for k, v in job["timings_ms"].items() if "[" not in k},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    data = big_png(args.side)
    with tempfile.TemporaryDirectory(prefix="maskline-bench-") as home:
        stack = Stack(on_free_ports(load(StackSettings), home), extra_env={"MASKLINE_MAX_UPLOAD_BYTES": str(50_000_000)})
        stack.up()
        client = JsonClient(stack.gateway_url, api_key="dev-key", timeout=900)
        try:
            client.submit(data, filename="warm.png", wait=600)  # first-use costs (model load) out of the way
            rounds = {"plain": [one(stack, client, data, False) for _ in range(args.rounds)]}
            rounds["tta"] = [one(stack, client, data, True) for _ in range(args.rounds)]
        finally:
            client.close()
            stack.down()
    report: dict[str, Any] = {
        "command": f"python -m bench.big_image --side {args.side} --rounds {args.rounds}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "image": {"side": args.side, "png_bytes": len(data)},
        "rounds": rounds,
        "medians": {
            kind: {k: statistics.median(r[k] for r in runs) for k in ("seconds", "above_idle_mb", "peak_mb")}
            for kind, runs in rounds.items()
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
