"""Bring `compose.yaml` up on podman, exercise it through its proxy, take it down: one recipe.

    python -m maskline.infra.compose            # up, smoke, fault, down; results to docs/bench/compose.json
    python -m maskline.infra.compose up         # and leave it running (http://127.0.0.1:8080)
    python -m maskline.infra.compose smoke|fault
    python -m maskline.infra.compose down       # containers, network and volumes removed

docker-compose (Debian's) talks to podman's Docker API (`podman system service`, on a socket under
build/), with `infra/podman/compose.podman.yaml` laid over compose.yaml: local images for what
compose.yaml pulls from registries (see that file). Images missing locally are built first
(maskline.infra.images). podman runs health checks from systemd timers, and these machines have no
systemd: a thread here runs each container's check on its interval's stead (every few seconds), so
compose's `depends_on: service_healthy` waits on the real checks. Credentials come from
`maskline credentials --out secrets` (made once, kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from maskline.infra import images
from maskline.infra.compose import smoke
from maskline.infra.embedded.process import wait_until
from maskline.infra.local_credentials import API_KEYS, ensure_credentials

ROOT = images.ROOT
PROJECT = "maskline"
FILES = ("-f", str(ROOT / "compose.yaml"), "-f", str(ROOT / "infra" / "podman" / "compose.podman.yaml"))
SOCKET = ROOT / "build" / "podman.sock"
RESULTS = ROOT / "docs" / "bench" / "compose.json"
#: compose.yaml's own images, and the stand-ins the overlay names.
NEEDED = (*images.TARGETS, *images.STAND_INS)
HEALTH_TICK_S = 1.0
READY_S = 600.0


def environment() -> dict[str, str]:
    return {
        **os.environ,
        "DOCKER_HOST": f"unix://{SOCKET}",
        "CONTAINERS_CONF": str(images.CONTAINERS_CONF),
        "MASKLINE_API_KEYS": API_KEYS,
        "MASKLINE_OPERATORS": "tenant-a",
        # compose.yaml requires it for MinIO's root; the S3 stand-in has no root user.
        "MINIO_ROOT_PASSWORD": os.environ.get("MINIO_ROOT_PASSWORD", "unused-by-the-s3-stand-in"),
        "COMPOSE_HTTP_TIMEOUT": "600",
    }


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker-compose", "-p", PROJECT, *FILES, *args], env=environment(), check=check, text=True)


def podman_out(*args: str) -> str:
    return images.podman(*args, capture=True, check=False).stdout


@contextmanager
def engine() -> Iterator[None]:
    """podman's Docker API on a socket of our own, for as long as the block runs."""
    SOCKET.parent.mkdir(exist_ok=True)
    SOCKET.unlink(missing_ok=True)
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{SOCKET}"],
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(SOCKET.exists, 30, "podman system service", service)
        yield
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def containers() -> list[dict[str, Any]]:
    listed = podman_out("ps", "--all", "--filter", f"label=com.docker.compose.project={PROJECT}", "--format", "json")
    return list(json.loads(listed or "[]"))


def check_interval_s(container: str) -> float | None:
    """The container's health-check interval (0: it has no check; None: podman did not say)."""
    done = images.podman("inspect", "--format", "{{json .Config.Healthcheck}}", container, capture=True, check=False)
    if done.returncode != 0:
        return None
    check = json.loads(done.stdout) if done.stdout.strip() not in ("", "null") else None
    return float(check.get("Interval") or 30e9) / 1e9 if check and check.get("Test") else 0.0


@contextmanager
def health_checks() -> Iterator[None]:
    """Run each running container's health check at its own interval, as systemd timers would:
    the first one an interval after the container is first seen, as Docker does."""
    stop = threading.Event()
    due: dict[str, tuple[float, float]] = {}  # container id -> (interval s, next run)

    def run_due() -> None:
        for c in containers():
            if c.get("State") != "running":
                continue
            if c["Id"] not in due:
                interval = check_interval_s(c["Id"])
                if interval is None:
                    continue  # asked again on the next tick
                due[c["Id"]] = (interval, time.monotonic() + interval)
            interval, next_run = due[c["Id"]]
            if interval and time.monotonic() >= next_run:
                images.podman("healthcheck", "run", c["Id"], capture=True, check=False)
                due[c["Id"]] = (interval, time.monotonic() + interval)

    def tick() -> None:
        while not stop.wait(HEALTH_TICK_S):
            try:
                run_due()
            except Exception as exc:  # a failed pass must not end the checks: up() would wait in vain
                print(f"health checks: {exc!r}", file=sys.stderr, flush=True)

    thread = threading.Thread(target=tick, name="health-checks", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def health() -> dict[str, str]:
    """Each container's state: healthy, unhealthy or starting while it runs; `exited N` after."""
    states = {}
    for c in containers():
        name, status = c["Names"][0], c.get("Status", "")
        if c.get("State") != "running":
            states[name] = f"exited {c.get('ExitCode')}"
            continue
        states[name] = next((s for s in ("unhealthy", "healthy", "starting") if f"({s})" in status), "running")
    return states


def wait_healthy(started: float) -> dict[str, Any]:
    """Until every long-running container is healthy and the one-shots (minio-setup, provision)
    have exited 0."""
    one_shots = {f"{PROJECT}_provision_1", f"{PROJECT}_minio-setup_1"}
    while True:
        states = health()
        waiting = {n: s for n, s in states.items() if s != ("exited 0" if n in one_shots else "healthy")}
        if states and not waiting:
            return {"ready_s": round(time.monotonic() - started, 1), "containers": states}
        if time.monotonic() - started > READY_S:
            raise SystemExit(f"not healthy within {READY_S:.0f} s: {waiting}")
        time.sleep(2)


def up() -> dict[str, Any]:
    built = images.ensure(NEEDED)
    ensure_credentials()
    started = time.monotonic()
    compose("up", "-d", "--no-build")
    ready = wait_healthy(started)
    print(f"compose up: {len(ready['containers'])} containers healthy in {ready['ready_s']} s", flush=True)
    return {"built_first": built, **ready}


def down() -> dict[str, Any]:
    started = time.monotonic()
    compose("down", "--volumes", "--remove-orphans", "--timeout", "20")
    left = containers()
    if left:
        raise SystemExit(f"left behind after down: {[c['Names'][0] for c in left]}")
    return {"down_s": round(time.monotonic() - started, 1)}


def run(steps: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with engine(), health_checks():
        for step in steps:
            print(f"=== {step}", flush=True)
            if step == "up":
                results["up"] = up()
            elif step == "smoke":
                results["smoke"] = smoke.run_all(smoke.GATEWAY)
            elif step == "fault":
                results["fault"] = smoke.fault(smoke.GATEWAY, PROJECT)
            elif step == "down":
                results["down"] = down()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskline.infra.compose", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", nargs="?", choices=("all", "up", "smoke", "fault", "down"), default="all")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    steps = ["up", "smoke", "fault", "down"] if args.step == "all" else [args.step]
    try:
        results = run(steps)
    except BaseException:
        if args.step == "all":
            print("=== failed: logs of unhealthy containers, then down", flush=True)
            for name, state in health().items():
                if state != "healthy" and state != "exited 0":
                    print(f"--- {name} ({state})\n{podman_out('logs', '--tail', '30', name)}", flush=True)
            with engine():
                compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)
        raise
    if args.step == "all":
        report = {**images.run_header("python -m maskline.infra.compose"), **results}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0
