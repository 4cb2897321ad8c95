"""The end-to-end checks run against a compose deployment, through its proxy only (what a user
reaches): segment, TTA, a tenant refused, quantize, merge and segment with each result, verify the
audit trail, and what an operator sees (Prometheus's targets and rules); and one fault (a merge
container killed and a NATS node stopped while jobs run) after which every job has completed
exactly once. Each check raises on a wrong answer."""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from maskline.client import ApiError, JsonClient
from maskline.infra import images
from maskline.models.starter import WEIGHTS, shapes

GATEWAY = "http://127.0.0.1:8080"
KEY_A, KEY_B = "key-a", "key-b"
FAULT_JOBS = 40
FINAL = ("completed", "failed", "cancelled")
JOB_S = 300.0


def png(array: NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def sample(seed: int, size: int = 128) -> tuple[bytes, NDArray[np.uint8]]:
    image, truth = shapes.sample(np.random.default_rng(seed), size)
    return png(image), truth


def segmented(client: JsonClient, seed: int, **options: Any) -> tuple[float, dict[str, Any]]:
    """Segment a shapes image; the share of pixels the mask gets right, and the model that ran."""
    image, truth = sample(seed)
    job = client.submit(image, wait=120, **options)
    if job["status"] != "completed":
        raise AssertionError(f"segmentation {options} ended {job['status']}: {job.get('error')}")
    mask = np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))
    if not client.artifact(job["id"], "overlay").startswith(b"\x89PNG"):
        raise AssertionError("the overlay is not a PNG")
    return float((mask == truth).mean()), dict(job["model"])


def check_segment(a: JsonClient, b: JsonClient) -> str:
    accuracy, _ = segmented(a, 7)
    if accuracy < 0.9:
        raise AssertionError(f"shapes-unet got {accuracy:.3f} of the pixels right")
    return f"mask {accuracy:.3f} right, overlay PNG"


def check_tta(a: JsonClient, b: JsonClient) -> str:
    accuracy, _ = segmented(a, 8, tta=True, tta_angle=20, tta_fusion="mean")
    if accuracy < 0.9:
        raise AssertionError(f"TTA got {accuracy:.3f} of the pixels right")
    return f"TTA mask {accuracy:.3f} right"


def check_tenant_refused(a: JsonClient, b: JsonClient) -> str:
    job = a.submit(sample(9)[0], wait=60)
    try:
        b.status(job["id"])
    except ApiError as exc:
        if exc.status != 404:
            raise AssertionError(f"tenant-b asking for tenant-a's job got {exc.status}, not 404") from exc
    else:
        raise AssertionError("tenant-b read tenant-a's job")
    anonymous = a.http.get(f"/v1/segmentations/{job['id']}", headers={"Authorization": ""})
    if anonymous.status_code != 401:
        raise AssertionError(f"no key: {anonymous.status_code}, not 401")
    return "another tenant: 404; no key: 401"


def upload_calibration(a: JsonClient, dataset: str, count: int) -> None:
    rng = np.random.default_rng(41)
    for i in range(count):
        a.upload_dataset_file(dataset, "images", png(shapes.sample(rng, 128)[0]), f"c{i:02d}.png")


def finished_version(a: JsonClient, job: dict[str, Any]) -> int:
    done = a.wait_job(job["id"], timeout=JOB_S)
    if done["status"] != "completed":
        raise AssertionError(f"{job['kind']} ended {done['status']}: {done.get('error')}")
    return int(done["links"]["model"].rsplit("/", 1)[1])


def check_quantize(a: JsonClient, b: JsonClient) -> str:
    upload_calibration(a, "smoke-calibration", 16)
    version = finished_version(a, a.quantize("shapes-unet", 1, dataset="smoke-calibration", max_images=16))
    accuracy, model = segmented(a, 10, model="shapes-unet", version=version)
    if accuracy < 0.9 or model["precision"] != "int8" or model["owner"] != "tenant-a":
        raise AssertionError(f"the INT8 version ({model}) got {accuracy:.3f} of the pixels right")
    return f"tenant-a's INT8 shapes-unet v{version} (from maskline's v1): mask {accuracy:.3f} right"


def site_model(folder: Path, seed: int) -> Path:
    """The starter with small noise on every weight, as if fine-tuned at another site."""
    module = torch.jit.load(str(WEIGHTS))  # type: ignore[no-untyped-call]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.002)
    path = folder / f"site{seed}.pt"
    module.save(str(path))
    return path


def check_merge(a: JsonClient, b: JsonClient) -> str:
    labels = list(shapes.LABELS)
    with tempfile.TemporaryDirectory() as folder:
        sites = [
            a.register_model(site_model(Path(folder), s), name=f"smoke-site-{s}", labels=labels, input_size=(128, 128))
            for s in (1, 2)
        ]
    pair = [(m["name"], int(m["version"])) for m in sites]
    version = finished_version(a, a.merge_models(pair, name="smoke-merged", method="avg"))
    accuracy, model = segmented(a, 11, model="smoke-merged", version=version)
    if accuracy < 0.9 or model["name"] != "smoke-merged":
        raise AssertionError(f"the merged version got {accuracy:.3f} of the pixels right")
    return f"avg of two sites -> smoke-merged v{version}: mask {accuracy:.3f} right"


def check_audit(a: JsonClient, b: JsonClient) -> str:
    verdict = a.http.get("/v1/audit/verify").json()
    if not verdict.get("intact") or verdict.get("records", 0) < 1:
        raise AssertionError(f"audit verify: {verdict}")
    refused = b.http.get("/v1/audit/verify")
    if refused.status_code != 403:
        raise AssertionError(f"a tenant that is no operator verified the whole trail: {refused.status_code}")
    return f"intact: {verdict['records']} records, {verdict['events']} events; non-operator 403"


PROMETHEUS = "http://127.0.0.1:9091"
#: The jobs of infra/prometheus/prometheus.yml whose every target must be up (the NATS exporters
#: are not started on podman).
SCRAPED = ("maskline-gateway", "maskline-workers", "triton")


def check_prometheus(a: JsonClient, b: JsonClient) -> str:
    """Prometheus (compose's, port 9091) scrapes every gateway and worker replica and Triton, and
    holds the chart's alerting rules."""
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=PROMETHEUS, timeout=5) as prometheus:
        while True:
            targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
            mine = [t for t in targets if t["labels"]["job"] in SCRAPED]
            down = [t["scrapeUrl"] for t in mine if t["health"] != "up"]
            if mine and not down:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus targets not up: {down or 'none found'}")
            time.sleep(2)
        groups = prometheus.get("/api/v1/rules").json()["data"]["groups"]
    rules = sum(len(g["rules"]) for g in groups)
    if not rules:
        raise AssertionError("Prometheus loaded no alerting rules")
    return f"{len(mine)} targets up ({', '.join(SCRAPED)}), {rules} alerting rules loaded"


CHECKS: dict[str, Callable[[JsonClient, JsonClient], str]] = {
    "segment": check_segment,
    "tta": check_tta,
    "tenant_refused": check_tenant_refused,
    "quantize": check_quantize,
    "merge": check_merge,
    "audit_verify": check_audit,
    "prometheus": check_prometheus,
}


def clients(url: str) -> tuple[JsonClient, JsonClient]:
    return JsonClient(url, api_key=KEY_A, timeout=180), JsonClient(url, api_key=KEY_B, timeout=180)


def run_all(url: str) -> dict[str, Any]:
    a, b = clients(url)
    results = {}
    try:
        for name, check in CHECKS.items():
            started = time.monotonic()
            said = check(a, b)
            results[name] = {"seconds": round(time.monotonic() - started, 1), "result": said}
            print(f"{name}: {said} ({results[name]['seconds']} s)", flush=True)
    finally:
        a.close()
        b.close()
    return results


def fault(url: str, project: str) -> dict[str, Any]:
    """Jobs in flight while a merge container is killed and a NATS node stopped: every one completes,
    each with exactly one completion in its audit trail."""
    a, _ = clients(url)
    merge, node = f"{project}_merge_1", f"{project}_nats-2_1"
    try:
        jobs = [a.submit(sample(100 + i)[0], wait=0)["id"] for i in range(FAULT_JOBS)]
        images.podman("kill", merge, capture=True)
        images.podman("stop", "--time", "5", node, capture=True)
        started = time.monotonic()
        # How many were still on their way when both faults had happened (0 would prove nothing).
        in_flight = sum(a.status(job)["status"] not in FINAL for job in jobs)
        ends = [a.wait_job(job, timeout=JOB_S)["status"] for job in jobs]
        drained_s = round(time.monotonic() - started, 1)
        images.podman("start", node, capture=True)
        images.podman("start", merge, capture=True)
        lost = [job for job, end in zip(jobs, ends, strict=True) if end != "completed"]
        completions = {job: completed_events(a, job) for job in jobs}
    finally:
        a.close()
    twice = {job: n for job, n in completions.items() if n != 1}
    if lost or twice or not in_flight:
        raise AssertionError(f"after the fault: not completed {lost}; completions other than one {twice}; {in_flight} in flight")
    said = f"{FAULT_JOBS} jobs ({in_flight} in flight) all completed once after {merge} killed and {node} stopped"
    print(f"fault: {said} ({drained_s} s)", flush=True)
    return {
        "jobs": FAULT_JOBS,
        "in_flight_at_fault": in_flight,
        "killed": merge,
        "stopped": node,
        "all_completed_s": drained_s,
        "lost": 0,
        "duplicated": 0,
    }


def completed_events(a: JsonClient, job: str) -> int:
    """Completions in the job's audit trail (it may reach the trail shortly after the job ends)."""
    deadline = time.monotonic() + 30
    while True:
        count = sum(int(e["type"] == "seg.v1.completed") for e in a.audit(job)["events"])
        if count or time.monotonic() > deadline:
            return count
        time.sleep(1)
