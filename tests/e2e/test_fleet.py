"""Operators see the fleet from the bus alone; the stack is run and stopped with the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from maskline.client import JsonClient
from maskline.infra.embedded import reap
from maskline.infra.embedded.process import free_port
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from maskline.shared.bus import connect
from maskline.shared.config import RuntimeSettings
from maskline.shared.operations.fleet import SERVICES, service_status
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e


async def micro_ping(settings: RuntimeSettings) -> list[dict]:
    nc = (await connect(settings, "test", identity="admin")).nc
    inbox = nc.new_inbox()
    replies: list[dict] = []
    sub = await nc.subscribe(inbox)
    await nc.publish("$SRV.INFO", b"", reply=inbox)
    try:
        while True:
            msg = await sub.next_msg(timeout=0.5)
            replies.append(json.loads(msg.data))
    except Exception:
        pass
    await nc.close()
    return replies


def test_every_service_registers_with_the_nats_services_api(stack: Stack, admin: RuntimeSettings) -> None:
    infos = asyncio.run(micro_ping(admin))
    names = {i["name"] for i in infos}
    assert {f"maskline-{s}" for s in SERVICES} <= names
    statuses = asyncio.run(service_status(admin, list(SERVICES)))
    for name, status in statuses.items():
        assert status is not None and status["ready"] is True, name
        assert status["checks"]["nats"] and status["checks"]["store"]
    assert statuses["infer"]["checks"]["triton"] and statuses["infer"]["checks"]["models"]
    assert statuses["ingest"]["consumers"]["ingest"]["processed"] >= 0


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def test_cli_up_status_down_runs_a_second_stack_beside_the_first(tmp_path: Path) -> None:
    ports = {
        name: str(free_port())
        for name in ("PORT", "NATS_PORT", "NATS_MONITOR_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT", "TRITON_METRICS_PORT")
    }
    env = {**os.environ, "MASKLINE_HOME": str(tmp_path / "second"), **{f"MASKLINE_{k}": v for k, v in ports.items()}}
    cli = [sys.executable, "-m", "maskline.cli"]
    up = subprocess.run([*cli, "up"], env=env, capture_output=True, text=True, timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        status = subprocess.run([*cli, "--json", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["ready"] is True
        assert all(p["running"] for p in report["processes"].values())
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['PORT']}/health/ready") as response:
            assert response.status == 200
        restart = subprocess.run([*cli, "--json", "restart", "audit"], env=env, capture_output=True, text=True, timeout=60)
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert json.loads(restart.stdout)["pid"] not in (0, report["processes"]["audit"]["pid"])
        # kill -9 Triton: the supervisor starts it again, and the new one reaps the old one's stubs.
        home = tmp_path / "second"
        stubs_before = len(reap.stubs(home))
        assert stubs_before >= 1
        os.kill(report["processes"]["triton"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while True:
            now = json.loads(subprocess.run([*cli, "--json", "status"], env=env, capture_output=True, text=True).stdout)
            triton = now["processes"]["triton"]
            if now["ready"] and triton["running"] and triton["pid"] != report["processes"]["triton"]["pid"]:
                break
            assert time.monotonic() < deadline, now
            time.sleep(1)
        assert triton["restarts"] == 1
        parents = {parent_of(stub) for stub in reap.stubs(home)}
        assert parents <= {triton["pid"]}, parents  # the dead one's stubs are gone: each stub left is the new one's
    finally:
        down = subprocess.run([*cli, "down"], env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0 and "stack stopped" in down.stdout
    assert not (tmp_path / "second" / "stack.json").exists()
    assert reap.stubs(tmp_path / "second") == [] and reap.shm_regions() == []  # no orphan stub, no stray /dev/shm region
    for name, proc in report["processes"].items():
        assert not Path(f"/proc/{proc['pid']}").exists() or "zombie" in Path(f"/proc/{proc['pid']}/status").read_text().lower(), (
            name
        )


def test_sigterm_drains_a_service_and_a_restarted_one_picks_up_the_queue(stack: Stack, client: JsonClient) -> None:
    stack.stop_service("ingest")  # SIGTERM through the supervisor: a drained service stays stopped
    log = (Path(stack.home) / "logs" / "ingest.log").read_text()
    assert '"event": "service.stopped"' in log or '"event":"service.stopped"' in log.replace(" ", "")
    image, _ = shapes.sample(np.random.default_rng(1), size=96)
    job = client.submit(png_bytes(image), wait=1)  # nobody ingests now: the request waits on the bus
    assert job["status"] == "requested"
    stack.start_service("ingest")
    deadline = time.monotonic() + 60
    while client.status(job["id"])["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_services_endpoint_shows_the_fleet_queues_and_dead_letters(client: JsonClient, other_tenant: JsonClient) -> None:
    fleet = client.http.get("/v1/services").json()
    by_name = {s["name"]: s for s in fleet["services"]}
    assert set(by_name) == set(SERVICES)
    for name, service in by_name.items():
        assert service["ready"] is True, name
        assert len(service["instances"]) >= 1 and service["instances"][0]["version"]
    # infer's Triton against its memory budget (none here): what it holds, to an operator (tenant-a)...
    triton = by_name["infer"]["instances"][0]["triton"]
    assert triton["budget_bytes"] == 0 and triton["loaded_bytes"] == sum(v["bytes"] for v in triton["loaded"])
    assert all({"model", "version", "bytes", "pinned", "last_used"} <= set(v) for v in triton["loaded"])
    # ... and only the totals to a tenant that is no operator: the list names other tenants' models
    other = next(s for s in other_tenant.http.get("/v1/services").json()["services"] if s["name"] == "infer")
    seen = other["instances"][0]["triton"]
    assert "loaded" not in seen and seen["loaded_versions"] == len(triton["loaded"])
    consumers = {(q["stream"], q["consumer"]) for q in fleet["queues"]}
    assert {("SEG", "ingest"), ("SEG", "infer"), ("SEG", "merge"), ("SEG", "augment")} <= consumers
    assert all(q["pending"] >= 0 and q["in_flight"] >= 0 for q in fleet["queues"])
    assert isinstance(fleet["dead_letters"], int)


def fleet_of(client: JsonClient, service: str) -> dict:
    fleet = client.http.get("/v1/services").json()
    return next(s for s in fleet["services"] if s["name"] == service)


def test_a_killed_instance_turns_stale_and_the_supervisor_brings_up_a_new_one(stack: Stack, client: JsonClient) -> None:
    before = fleet_of(client, "augment")
    assert before["state"] == "up"
    killed = next(i for i in before["instances"] if i["state"] == "up")
    stale_after = client.http.get("/v1/services").json()["stale_after_s"]
    restarts = stack.status()["processes"]["augment"]["restarts"]
    stack.kill_service("augment")  # SIGKILL: the supervisor restarts it after a short back-off
    started = time.monotonic()
    while True:
        rows = {i["instance"]: i for i in fleet_of(client, "augment")["instances"]}
        if rows[killed["instance"]]["state"] == "stale" and any(r["state"] == "up" for r in rows.values()):
            break
        assert time.monotonic() - started < stale_after + 30, rows
        time.sleep(0.5)
    assert fleet_of(client, "augment")["state"] == "up"
    rows = {i["instance"]: i for i in fleet_of(client, "augment")["instances"]}
    assert rows[killed["instance"]]["state"] == "stale" and any(r["state"] == "up" for r in rows.values())
    # Instances that earlier tests restarted cleanly say so ("stopped"); none is left in any other state.
    assert {i["state"] for i in rows.values()} <= {"up", "stale", "stopped"}
    assert all(i["last_heartbeat_s_ago"] >= 0 for i in rows.values())
    process = stack.status()["processes"]["augment"]
    assert process["running"] and process["restarts"] == restarts + 1


def scrape(stack: Stack) -> dict[str, float]:
    with urllib.request.urlopen(stack.gateway_url + "/metrics") as response:  # no API key: scraped from inside
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_move_when_jobs_run(stack: Stack, client: JsonClient) -> None:
    before = scrape(stack)
    image, _ = shapes.sample(np.random.default_rng(7), size=96)
    assert client.submit(png_bytes(image), wait=60)["status"] == "completed"
    with pytest.raises(Exception):  # noqa: B017 (any failure: the point is the error counter)
        client.submit(png_bytes(image), wait=60, model="no-such-model")
    deadline = time.monotonic() + 10
    while True:
        after = scrape(stack)
        done = 'maskline_jobs_total{family="seg",state="completed"}'
        failed = 'maskline_errors_total{code="model_not_found",stage="infer"}'
        if after.get(done, 0) > before.get(done, 0) and after.get(failed, 0) > before.get(failed, 0):
            break
        assert time.monotonic() < deadline, {k: v for k, v in after.items() if "jobs_total" in k or "errors_total" in k}
        time.sleep(0.2)
    assert after["maskline_triton_seconds_count"] > before.get("maskline_triton_seconds_count", 0)
    assert after['maskline_stage_seconds_count{stage="infer"}'] > before.get('maskline_stage_seconds_count{stage="infer"}', 0)
    assert 'maskline_queue_pending{consumer="infer",stream="SEG"}' in after
    assert "maskline_dead_letters" in after
    assert after['maskline_instances{service="infer",state="up"}'] >= 1
