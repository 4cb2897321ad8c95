"""Chaos suite: faults injected into a real embedded stack under load, one report per scenario.

    python -m bench.chaos [--scenarios all] [--outage-s 300] [--pause-s 130] [--max-backlog 8] [--out docs/bench/chaos.json]

Scenarios (names for --scenarios, comma-separated):
- kill-<program>: SIGKILL one program (each service, triton, nats) 5 s into 25 s of 3 jobs/s
  (every third with TTA); the supervisor restarts it.
- pause-merge: SIGSTOP the merge worker holding a job past the bus's duplicate window while the
  other merge worker finishes it, then SIGCONT it.
- triton-down: Triton stopped for --outage-s while 1 job/s streams in.
- infer-down: the infer service stopped for --outage-s while 1 job/s streams in.
- nats-down: nats-server stopped for 30 s while 1 job/s streams in.
- store-down: the object store (an S3-wire server) stopped for --outage-s while 1 job/s streams in.
- overload: 10x the measured capacity offered for 20 s.
- nats-leader: on a 3-node NATS cluster (streams R3), the node leading the SEG stream SIGKILLed
  5 s into 3 jobs/s and kept down for --leader-down-s, then started again. Also counts ghosts:
  jobs the bus holds a request for that no client was told were accepted.

For each: jobs accepted, completed, failed (with codes), refused (with codes), duplicated
(a job with more than one `seg.v1.completed` in its audit trail), stuck (accepted, not finished
two minutes after the fault ended) and the time to recover (from the end of the fault — the kill,
or the dependency started again — to the first completion of a job submitted after the fault
began). Exit status 1 if any accepted job was lost, duplicated or stuck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import logging
import os
import platform
import signal
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
from moto.server import ThreadedMotoServer
from PIL import Image

from maskline.contracts import subjects as table
from maskline.infra.embedded.process import free_port
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from maskline.shared.bus import connect, read_stream
from maskline.shared.config import load

AUTH = {"Authorization": "Bearer dev-key"}
OVERLOAD_S = 20.0
#: Every service of the system table, then the servers.
PROGRAMS = (*table.SERVICES, "triton", "nats")


def png(seed: int, size: int = 96) -> bytes:
    image, _ = shapes.sample(np.random.default_rng(seed), size=size)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Tally:
    accepted: dict[str, float] = field(default_factory=dict)
    """job id → when it was submitted."""
    refused: Counter[str] = field(default_factory=Counter)
    accept_ms: list[float] = field(default_factory=list)
    refuse_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, payload: bytes, started: float) -> None:
        ms = (time.monotonic() - started) * 1000
        with self.lock:
            if status in (200, 202):
                self.accepted[json.loads(payload)["id"]] = started
                self.accept_ms.append(ms)
                return
            try:
                code = str(json.loads(payload).get("code", status))
            except ValueError:
                code = str(status)
            self.refused[code] += 1
            self.refuse_ms.append(ms)


def submit(http: httpx.Client, tally: Tally, seed: int, *, tta: bool = False) -> None:
    started = time.monotonic()
    try:
        upload = {"image": ("a.png", png(seed), "image/png")}
        response = http.post("/v1/segmentations", files=upload, data={"tta": "true"} if tta else None)
    except httpx.HTTPError as exc:
        with tally.lock:
            tally.refused[f"connection:{type(exc).__name__}"] += 1
        return
    tally.record(response.status_code, response.content, started)


def stream(gateway: str, tally: Tally, rate_per_s: float, seconds: float, seed: int) -> None:
    """Submit at a steady rate from one thread (requests that take long push the next ones back);
    every third job with TTA, so augment and the five-variant fusion are in the path too."""
    http = httpx.Client(base_url=gateway, headers=AUTH, timeout=30)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        submit(http, tally, seed + n, tta=n % 3 == 2)
        n += 1
        time.sleep(max(0.0, 1.0 / rate_per_s - 0.001))
    http.close()


def outcome(gateway: str, tally: Tally, fault: Fault, settle_s: float) -> dict[str, Any]:
    """Wait for every accepted job (up to `settle_s`), then count outcomes and duplicates.

    Recovery: from the fault's end to the first completion, after that end, of a job submitted
    after the fault began."""
    http = httpx.Client(base_url=gateway, headers=AUTH, timeout=30)
    deadline = time.monotonic() + settle_s
    states: dict[str, dict[str, Any]] = {}
    pending = set(tally.accepted)
    while pending and time.monotonic() < deadline:
        for job in list(pending):
            try:
                view = http.get(f"/v1/segmentations/{job}").json()
            except (httpx.HTTPError, ValueError):
                continue
            if view.get("status") in ("completed", "failed"):
                states[job] = view
                pending.discard(job)
        time.sleep(1.0)
    completed = [j for j, v in states.items() if v["status"] == "completed"]
    failed = Counter(v["error"]["code"] for v in states.values() if v["status"] == "failed" and v.get("error"))
    duplicated = 0
    for job in completed:
        trail = http.get("/v1/audit", params={"job": job}).json()["events"]
        duplicated += sum(r["type"] == "seg.v1.completed" for r in trail) > 1
    # Jobs already past the failed part when the fault began may finish during it: recovery is the
    # first completion of a job submitted after the fault began, at or after the fault's end.
    after = [j for j, at in tally.accepted.items() if at > fault.began and j in completed]
    recovered_at = min((t for j in after if (t := wallclock(states[j]["updated"])) >= fault.ended), default=None)
    http.close()
    return {
        "accepted": len(tally.accepted),
        "completed": len(completed),
        "failed": dict(failed),
        "refused": dict(tally.refused),
        "refusal_p99_ms": p99(tally.refuse_ms),
        "duplicated": duplicated,
        "stuck": len(pending),
        "recovery_s": round(recovered_at - fault.ended, 1) if recovered_at else None,
    }


@dataclass
class Fault:
    began: float = 0.0
    """Monotonic clock: when it was injected."""
    ended: float = 0.0
    """Wall clock: when it was over (the kill itself, or the dependency started again)."""


def wallclock(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def under_load(
    stack: Stack, inject: Callable[[], float], *, rate: float = 3.0, after_s: float = 20.0, tally: Tally | None = None
) -> dict[str, Any]:
    """Stream jobs at `rate`/s; 5 s in, `inject()` the fault (it returns how long the fault lasts)."""
    tally = tally if tally is not None else Tally()
    loader = threading.Thread(target=stream, args=(stack.gateway_url, tally, rate, 5.0 + after_s, 1000), daemon=True)
    loader.start()
    time.sleep(5.0)
    fault = Fault(began=time.monotonic())
    fault.ended = time.time() + inject()
    loader.join()
    return outcome(stack.gateway_url, tally, fault, settle_s=120.0)


def kill(stack: Stack, program: str) -> dict[str, Any]:
    restarted: list[float] = []

    def inject() -> float:
        started = time.monotonic()
        stack.kill_service(program, wait_restarted=True)
        restarted.append(time.monotonic() - started)
        return 0.0

    report = under_load(stack, inject)
    report["restarted_after_s"] = round(restarted[0], 1)
    report["restarts"] = stack.status()["processes"][program]["restarts"]
    return report


def outage(stack: Stack, program: str, seconds: float) -> dict[str, Any]:
    """Stop `program` (SIGTERM, it stays down) for `seconds` under a 1 job/s stream."""
    return dependency_down(stack, lambda: stack.stop_service(program), lambda: stack.start_service(program), seconds)


def dependency_down(stack: Stack, stop: Callable[[], Any], start: Callable[[], Any], seconds: float) -> dict[str, Any]:
    def inject() -> float:
        stop()
        threading.Timer(seconds, start).start()
        return seconds

    return under_load(stack, inject, rate=1.0, after_s=seconds + 10)


class S3Server:
    """moto's S3 server on a fixed port, stopped and started again with its objects kept (they live
    in this process): the object store of the `store-down` scenario, over the S3 wire protocol."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def env(self) -> dict[str, str]:
        return {
            "MASKLINE_STORE": "minio",
            "MASKLINE_MINIO_ENDPOINT": f"127.0.0.1:{self.port}",
            "MASKLINE_MINIO_ACCESS_KEY": "chaos",
            "MASKLINE_MINIO_SECRET_KEY": "chaos-secret",
            "MASKLINE_MINIO_BUCKET": "maskline",
        }


@contextlib.contextmanager
def running_stack(extra_env: dict[str, str], nats_cluster: int = 1) -> Iterator[Stack]:
    home = tempfile.mkdtemp(prefix="maskline-chaos-")
    settings = on_free_ports(load(StackSettings), home, merge_instances=2, log_level="warning", nats_cluster=nats_cluster)
    stack = Stack(settings, extra_env=extra_env)
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


def pause_merge(stack: Stack, pause_s: float) -> dict[str, Any]:
    http = httpx.Client(base_url=stack.gateway_url, headers=AUTH, timeout=60)
    stack.stop_service("merge-2")
    held = stack.pids["merge"]
    # 1792 x 1792: a render of a few hundred ms, so merge is caught holding it
    big = np.kron(shapes.sample(np.random.default_rng(5), size=256)[0], np.ones((7, 7, 1), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")
    upload = {"image": ("big.png", buf.getvalue(), "image/png")}

    async def pause_while_holding() -> str:
        bus = await connect(stack.client_settings("admin"), "chaos", identity="admin")
        try:
            response = await asyncio.to_thread(http.post, "/v1/segmentations", files=upload)
            for _ in range(3000):
                if (await bus.js.consumer_info("SEG", "merge")).num_ack_pending:
                    os.kill(held, signal.SIGSTOP)
                    return str(response.json()["id"])
                await asyncio.sleep(0.01)
            raise RuntimeError("merge never held the job")
        finally:
            await bus.close()

    try:
        job = asyncio.run(pause_while_holding())
        paused = time.monotonic()
    finally:
        stack.start_service("merge-2")
    try:
        deadline = time.monotonic() + 120
        while http.get(f"/v1/segmentations/{job}").json()["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.5)
        artifacts = http.get(f"/v1/segmentations/{job}").json()["artifacts"]
        time.sleep(max(0.0, pause_s - (time.monotonic() - paused)))
    finally:
        os.kill(held, signal.SIGCONT)
    time.sleep(10)  # the resumed worker finishes what it was doing and loses the fence
    trail = http.get("/v1/audit", params={"job": job}).json()["events"]
    final = http.get(f"/v1/segmentations/{job}").json()
    http.close()
    completions = sum(r["type"] == "seg.v1.completed" for r in trail)
    return {
        "paused_s": pause_s,
        "accepted": 1,
        "completed": int(final["status"] == "completed"),
        "completed_events": completions,
        "duplicated": int(completions > 1),
        "outputs_unchanged": final["artifacts"] == artifacts,
        "stuck": int(final["status"] not in ("completed", "failed")),
    }


def job_latencies_ms(http: httpx.Client, jobs: list[str]) -> list[float]:
    """Created → updated of each completed job, as the job state recorded them."""
    found = []
    for job in jobs:
        view = http.get(f"/v1/segmentations/{job}").json()
        if view.get("status") == "completed":
            found.append((wallclock(view["updated"]) - wallclock(view["created"])) * 1000)
    return found


def p99(values: list[float]) -> float:
    return round(sorted(values)[int(0.99 * (len(values) - 1))], 1) if values else 0.0


def multipart(image: bytes) -> tuple[bytes, str]:
    """A ready-made upload body (built once: the load generator's CPU goes into sending)."""
    boundary = "maskline-chaos-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    return head.encode() + image + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


async def offer(gateway: str, tally: Tally, images: list[bytes], *, rate_per_s: float, seconds: float) -> None:
    """Open loop: a request every 1/`rate_per_s` s whether or not earlier ones were answered.

    aiohttp, not httpx: at a few hundred requests/s httpx's own CPU on these two cores delays the
    requests it times."""
    bodies = [multipart(image) for image in images]
    connector = aiohttp.TCPConnector(limit=2048)
    async with aiohttp.ClientSession(gateway, headers=AUTH, connector=connector, timeout=aiohttp.ClientTimeout(60)) as http:

        async def one(n: int) -> None:
            body, content_type = bodies[n % len(bodies)]
            started = time.monotonic()
            try:
                async with http.post("/v1/segmentations", data=body, headers={"Content-Type": content_type}) as response:
                    status, payload = response.status, await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.refused[f"connection:{type(exc).__name__}"] += 1
                return
            tally.record(status, payload, started)

        tasks, begun, n = [], time.monotonic(), 0
        while (elapsed := time.monotonic() - begun) < seconds:
            while n < elapsed * rate_per_s:
                tasks.append(asyncio.create_task(one(n)))
                n += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)


async def closed_loop(gateway: str, tally: Tally, images: list[bytes], *, clients: int, jobs_each: int) -> None:
    """`clients` callers, each waiting for its job's result before sending the next."""
    async with httpx.AsyncClient(base_url=gateway, headers=AUTH, timeout=120) as http:

        async def caller(k: int) -> None:
            for i in range(jobs_each):
                started = time.monotonic()
                image = images[(k * jobs_each + i) % len(images)]
                response = await http.post(
                    "/v1/segmentations", params={"wait": 60}, files={"image": ("a.png", image, "image/png")}
                )
                tally.record(response.status_code, response.content, started)

        await asyncio.gather(*(caller(k) for k in range(clients)))


def overload(stack: Stack) -> dict[str, Any]:
    """Capacity with 4 callers waiting for results, then 10x that rate offered (open loop) for 20 s.

    Latency is a job's created → updated as its state recorded them, unloaded and under load alike;
    refusal latency is the client's. The load generator is one asyncio process on the stack's cores."""
    images = [png(seed) for seed in range(64)]
    unloaded = Tally()
    started = time.monotonic()
    asyncio.run(closed_loop(stack.gateway_url, unloaded, images, clients=4, jobs_each=20))
    capacity = len(unloaded.accepted) / (time.monotonic() - started)
    rss_before = stack_rss(stack)
    peak = dict(rss_before)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for name, mb in stack_rss(stack).items():
                peak[name] = max(peak.get(name, 0.0), mb)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    offered = Tally()
    fault = Fault(began=time.monotonic(), ended=time.time() + OVERLOAD_S)
    asyncio.run(offer(stack.gateway_url, offered, images, rate_per_s=10 * capacity, seconds=OVERLOAD_S))
    report = outcome(stack.gateway_url, offered, fault, settle_s=180.0)
    stop.set()
    sampler.join()
    rss_after = stack_rss(stack)
    http = httpx.Client(base_url=stack.gateway_url, headers=AUTH, timeout=60)
    unloaded_p99 = p99(job_latencies_ms(http, list(unloaded.accepted)))
    latencies = job_latencies_ms(http, list(offered.accepted))
    http.close()
    growth = {name: round(peak[name] - rss_before[name], 1) for name in rss_before if name in peak}
    report["recovery_s"] = None  # no fault to recover from: the load just stops
    report.update(
        {
            "capacity_jobs_per_s": round(capacity, 2),
            "offered_per_s": round(10 * capacity, 1),
            "sent": len(offered.accepted) + sum(offered.refused.values()),
            "unloaded_p99_ms": unloaded_p99,
            "accepted_p99_ms": p99(latencies),
            "accepted_p99_vs_unloaded": round(p99(latencies) / unloaded_p99, 2) if unloaded_p99 else None,
            "refusal_p50_ms": round(statistics.median(offered.refuse_ms), 1) if offered.refuse_ms else None,
            "refusal_p99_ms": p99(offered.refuse_ms),
            "rss_peak_growth_mb": dict(sorted(growth.items(), key=lambda kv: -kv[1])[:4]),
            "rss_after_vs_before_mb": round(sum(rss_after.values()) - sum(rss_before.values()), 1),
        }
    )
    return report


def leader_down(stack: Stack, seconds: float) -> dict[str, Any]:
    """SIGKILL the SEG stream's leader (supervisord would restart it at once: stop it too), wait for
    the election, keep it down `seconds`, start it again."""
    killed: dict[str, Any] = {"program": stack.stream_leader("SEG")}

    def inject() -> float:
        started = time.monotonic()
        stack.kill_service(killed["program"])
        stack.stop_service(killed["program"])
        while stack.stream_leader("SEG") in ("", killed["program"]):
            time.sleep(0.2)
        killed["election_s"] = round(time.monotonic() - started, 1)
        threading.Timer(seconds, stack.start_service, args=(killed["program"],)).start()
        return seconds

    tally = Tally()
    report = under_load(stack, inject, rate=3.0, after_s=seconds + 10, tally=tally)
    on_bus = asyncio.run(requested_jobs(stack))
    report.update(
        {
            "killed": killed["program"],
            "election_s": killed["election_s"],
            "ghosts": len(set(on_bus) - set(tally.accepted)),
            "internal_errors": tally.refused.get("internal", 0) + tally.refused.get("500", 0),
        }
    )
    return report


async def requested_jobs(stack: Stack) -> set[str]:
    """Every job the SEG stream holds a request for (as the admin identity)."""
    bus = await connect(stack.client_settings("admin"), "chaos", identity="admin")
    try:
        return {json.loads(m.data)["job_id"] for m in await read_stream(bus.js, "SEG", "seg.v1.requested.>")}
    finally:
        await bus.close()


def stack_rss(stack: Stack) -> dict[str, float]:
    found: dict[str, float] = {}
    for name, pid in stack.pids.items():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[name] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="all")
    parser.add_argument("--outage-s", type=float, default=300.0)
    parser.add_argument("--pause-s", type=float, default=130.0)
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=8,
        help="the stack's MASKLINE_MAX_BACKLOG: about capacity (~15 jobs/s here) x the queueing delay accepted (0.5 s)",
    )
    parser.add_argument("--leader-down-s", type=float, default=20.0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    faults = [f"kill-{p}" for p in PROGRAMS] + ["pause-merge", "triton-down", "infer-down", "nats-down"]
    names = [*faults, "store-down", "overload", "nats-leader"]
    chosen = names if args.scenarios == "all" else args.scenarios.split(",")
    results: dict[str, Any] = {}

    def run(name: str, scenario: Callable[[], dict[str, Any]]) -> None:
        print(f"--- {name}", flush=True)
        results[name] = scenario()
        print(json.dumps(results[name]), flush=True)
        time.sleep(5)

    # Three stacks: the faults on the default settings, the object store's outage on an S3-wire
    # store, the overload with the backlog cap sized for this machine.
    if any(n in faults for n in chosen):
        with running_stack({}) as stack:
            for name in (n for n in faults if n in chosen):
                if name.startswith("kill-"):
                    run(name, functools.partial(kill, stack, name.removeprefix("kill-")))
                elif name == "pause-merge":
                    run(name, lambda: pause_merge(stack, args.pause_s))
                elif name in ("triton-down", "infer-down"):
                    run(name, functools.partial(outage, stack, name.removesuffix("-down"), args.outage_s))
                elif name == "nats-down":
                    run(name, lambda: outage(stack, "nats", 30.0))
    if "store-down" in chosen:
        s3 = S3Server()
        s3.start()
        try:
            with running_stack(s3.env()) as stack:
                run("store-down", lambda: dependency_down(stack, s3.stop, s3.start, args.outage_s))
        finally:
            s3.stop()
    if "nats-leader" in chosen:
        with running_stack({}, nats_cluster=3) as stack:
            run("nats-leader", lambda: leader_down(stack, args.leader_down_s))
    if "overload" in chosen:
        with running_stack({"MASKLINE_MAX_BACKLOG": str(args.max_backlog)}) as stack:
            run("overload", lambda: overload(stack))
    report = {
        "command": "python -m bench.chaos " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    bad = [
        n
        for n, r in results.items()
        if r.get("duplicated")
        or r.get("stuck")
        or r.get("ghosts")
        or r.get("internal_errors")
        or r.get("completed", 0) < r.get("accepted", 0)
    ]
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
