"""Outages pause work instead of failing it, and a request the bus did not take leaves nothing
half-made: real processes stopped under the running stack (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image

from maskline.client import JsonClient
from maskline.client.retries import RetryPolicy
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from maskline.shared.bus import connect
from tests.e2e.conftest import AS_ANSWERED
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e


def image(seed: int) -> bytes:
    return png_bytes(shapes.sample(np.random.default_rng(seed), 96)[0])


def infer_consumers(client: JsonClient) -> list[dict]:
    fleet = client.http.get("/v1/services").json()
    infer = next(s for s in fleet["services"] if s["name"] == "infer")
    return [i["consumers"].get("infer", {}) for i in infer["instances"] if i["state"] == "up"]


def test_triton_down_pauses_infer_and_every_job_completes_once_it_is_back(stack: Stack, client: JsonClient) -> None:
    letters_before = {d["seq"] for d in client.dead_letters()}
    stack.stop_service("triton")
    try:
        jobs = [client.submit(image(900 + i), wait=0)["id"] for i in range(3)]
        wait_until(lambda: any(c.get("paused") == "triton" for c in infer_consumers(client)), 30, "infer paused")
        infer = next(s for s in client.http.get("/v1/services").json()["services"] if s["name"] == "infer")
        assert infer["state"] == "degraded"  # up, but not ready: it takes no work while Triton is down
        time.sleep(12)  # longer than every retry back-off of a counted retry
        assert {client.status(j)["status"] for j in jobs} <= {"requested", "ingested"}
    finally:
        stack.start_service("triton")
    wait_until(lambda: all(client.status(j)["status"] == "completed" for j in jobs), 120, "jobs completed")
    wait_until(lambda: not any(c.get("paused") for c in infer_consumers(client)), 30, "infer flowing again")
    new_letters = [d for d in client.dead_letters() if d["seq"] not in letters_before]
    assert not [d for d in new_letters if d["job_id"] in jobs]

    # The audit service folds the trail on its own consumer: it may trail the job state by a moment.
    def completions(job: str) -> int:
        return sum(r["type"] == "seg.v1.completed" for r in client.audit(job)["events"])

    wait_until(lambda: all(completions(job) >= 1 for job in jobs), 30, "completions audited")
    assert [completions(job) for job in jobs] == [1, 1, 1]


def test_with_the_bus_down_requests_get_503_and_a_retry_with_the_same_key_finishes(stack: Stack, client: JsonClient) -> None:
    keys = [uuid.uuid4().hex for _ in range(3)]
    bodies = {k: image(950 + i) for i, k in enumerate(keys)}

    def post(key: str) -> tuple[int, dict, dict]:
        files = {"image": ("a.png", bodies[key], "image/png")}
        response = client.http.post("/v1/segmentations", files=files, headers={"Idempotency-Key": key})
        return response.status_code, response.json(), dict(response.headers)

    stack.stop_service("nats")
    try:
        time.sleep(1.0)
        for key in keys:
            started = time.monotonic()
            status, problem, headers = post(key)
            assert status == 503 and problem["code"] == "bus_unavailable" and headers["retry-after"]
            assert time.monotonic() - started < 2.0  # refused at once, not after a publish timed out
    finally:
        stack.start_service("nats")
    wait_until(lambda: client.http.get("/health/ready").status_code == 200, 60, "gateway ready again")
    jobs = {}
    for key in keys:
        for _ in range(60):  # the services reconnect within moments
            status, view, _ = post(key)
            if status in (200, 202):
                break
            time.sleep(0.5)
        assert status in (200, 202), view
        jobs[key] = view["id"]
    wait_until(lambda: all(client.status(j)["status"] == "completed" for j in jobs.values()), 120, "jobs completed")
    assert len(set(jobs.values())) == len(keys)
    assert post(keys[0])[1]["id"] == jobs[keys[0]]  # the key still names its one job


def test_a_worker_paused_past_its_ack_wait_cannot_complete_a_job_twice(stack: Stack, client: JsonClient) -> None:
    """SIGSTOP the merge worker holding a job; the other one finishes it; the paused one resumes and
    can neither publish a second completion nor overwrite the outputs. `just chaos` pauses 130 s,
    past the bus's 120 s duplicate window, where only the fence stands between it and a duplicate."""
    pause_s = float(os.environ.get("MASKLINE_CHAOS_PAUSE_S", "15"))
    stack.stop_service("merge-2")  # merge 1 takes the next job
    held = stack.pids["merge"]

    async def pause_while_holding() -> str:
        """Submit, and SIGSTOP merge the moment it holds the job (delivered, not acknowledged)."""
        bus = await connect(stack.client_settings("admin"), "chaos", identity="admin")
        try:
            job = (await asyncio.to_thread(client.submit, big_image(), filename="big.png", wait=0))["id"]
            for _ in range(3000):
                if (await bus.js.consumer_info("SEG", "merge")).num_ack_pending:
                    os.kill(held, signal.SIGSTOP)
                    return str(job)
                await asyncio.sleep(0.01)
            raise AssertionError("merge never held the job")
        finally:
            await bus.close()

    try:
        job = asyncio.run(pause_while_holding())
        paused_at = time.monotonic()
    finally:
        stack.start_service("merge-2")
    try:
        wait_until(lambda: client.status(job)["status"] == "completed", 90, "completed by the other worker")
        artifacts = client.status(job)["artifacts"]
        time.sleep(max(0.0, pause_s - (time.monotonic() - paused_at)))
    finally:
        os.kill(held, signal.SIGCONT)
    time.sleep(8)  # the resumed worker finishes what it was doing, and loses the fence
    assert client.status(job)["artifacts"] == artifacts
    trail = client.audit(job)["events"]
    assert sum(r["type"] == "seg.v1.completed" for r in trail) == 1
    paths = [f["path"].split("/") for f in client.files("outputs")["files"] if f["path"].startswith(f"{job}/")]
    attempts = {p[1] for p in paths if len(p) == 3}  # <job>/<attempt>/<file> (probs.npy is infer's)
    assert len(attempts) == 1  # the loser removed its own outputs; the winner's stand


def big_image() -> bytes:
    image, _ = shapes.sample(np.random.default_rng(77), size=256)
    large = np.kron(image, np.ones((7, 7, 1), dtype=np.uint8))  # 1792 x 1792: a render of a few hundred ms
    buf = io.BytesIO()
    Image.fromarray(large).save(buf, format="PNG")
    return buf.getvalue()


def test_admission_refuses_over_a_tenants_limits_and_over_the_pipelines_backlog(stack: Stack, client: JsonClient) -> None:
    """Infer stopped, so jobs pile up: tenant-c (rate 2/s, burst 2, 3 unfinished jobs) is held to its
    limits with 429, everyone meets 503 at the backlog limit (40 queued) before the body is read, and
    every accepted job completes once infer is back."""
    tight = JsonClient(stack.gateway_url, api_key="key-c", timeout=60, retry=AS_ANSWERED)
    accepted: list[tuple[JsonClient, str]] = []
    stack.stop_service("infer")
    try:
        codes = []
        for n in range(5):
            response = tight.http.post("/v1/segmentations", files={"image": ("a.png", image(700 + n), "image/png")})
            codes.append(response.json().get("code") if response.status_code == 429 else response.status_code)
            if response.status_code == 202:
                accepted.append((tight, response.json()["id"]))
            else:
                assert response.headers["retry-after"]
            time.sleep(0.6)
        assert codes[:3] == [202, 202, 202] and set(codes[3:]) == {"too_many_jobs"}, codes
        refusal_ms = []
        for n in range(60):  # fill the pipeline up to its backlog limit
            started = time.monotonic()
            response = client.http.post("/v1/segmentations", files={"image": ("a.png", image(800 + n), "image/png")})
            if response.status_code == 503:
                refusal_ms.append((time.monotonic() - started) * 1000)
                assert response.json()["code"] == "overloaded" and response.headers["retry-after"]
                if len(refusal_ms) >= 5:
                    break
            else:
                assert response.status_code == 202, response.text
                accepted.append((client, response.json()["id"]))
        assert len(refusal_ms) >= 5 and len(accepted) >= 3 + 30
        # Refused before the body is read: a body that is not even multipart still meets 503, not 400.
        garbage = client.http.post("/v1/segmentations", content=b"\x00" * 4096, headers={"Content-Type": "multipart/form-data"})
        assert (garbage.status_code, garbage.json()["code"]) == (503, "overloaded")
        metrics = urllib.request.urlopen(stack.gateway_url + "/metrics").read().decode()
        assert 'maskline_admission_refused_total{code="overloaded"}' in metrics and "tenant-a" not in metrics
    finally:
        stack.start_service("infer")
    wait_until(lambda: all(c.status(j)["status"] == "completed" for c, j in accepted), 240, "every accepted job completed")
    tight.close()
    # Finished jobs no longer count against the tenant. The pipeline's backlog may still be draining
    # (audit, notify): a client that follows Retry-After, as the shipped ones do, gets in.
    with JsonClient(stack.gateway_url, api_key="key-c", timeout=60, retry=RetryPolicy(attempts=30)) as patient:
        assert patient.submit(image(799), wait=60)["status"] == "completed"


def test_job_status_is_current_within_5_s_of_an_audit_crash(stack: Stack, client: JsonClient) -> None:
    """SIGKILL audit (which projects job state) while it works through a burst of jobs' events: what
    the dead one held comes back to the restarted one after its 3 s ack wait (not the services'
    10 s), so every status is current within 5 s of audit running again. A gateway crash loses no
    status at all: the gateway only reads the bucket."""
    jobs = [client.submit(image(900 + n), wait=0)["id"] for n in range(12)]
    stack.kill_service("audit", wait_restarted=True)
    wait_until(lambda: all(client.status(j)["status"] == "completed" for j in jobs), 5, "every status current within 5 s")
    stack.kill_service("gateway", wait_restarted=True)
    wait_until(stack.gateway_ready, 30, "gateway ready again")
    assert all(client.status(j)["status"] == "completed" for j in jobs)
