"""Metrics from every service of a running stack: each worker's own /metrics on its probe port,
the gateway's platform view plus its HTTP and process metrics; every exposition passes
`promtool check metrics` (Prometheus's own linter) and keeps its labels bounded."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from maskline.client import JsonClient
from maskline.contracts.subjects import GATEWAY, SERVICES
from maskline.infra.embedded.stack import Stack

pytestmark = pytest.mark.e2e


def promtool_check(text: str) -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: ./dev test installs Debian's prometheus package (apt-get install prometheus)"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def test_every_worker_and_the_gateway_export_clean_bounded_metrics(stack: Stack, client: JsonClient, samples: Path) -> None:
    client.submit(samples / "shapes-3.png", wait=120)
    ports = stack.probe_ports()
    assert {label.split("-", 1)[0] for label in ports} == set(SERVICES) - {GATEWAY}
    processed: dict[str, float] = {}
    for label, port in ports.items():
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        promtool_check(text)
        found = parse(text)
        service = label.split("-", 1)[0]
        assert found["maskline_build_info"][0][0]["service"] == service
        assert found["process_cpu_seconds_total"][0][1] > 0 and found["process_resident_memory_bytes"][0][1] > 0
        for labels, value in found.get("maskline_consumer_messages_total", []):
            if labels["outcome"] == "processed":
                processed[labels["consumer"]] = processed.get(labels["consumer"], 0) + value
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).json()["ready"] is True
    assert processed["ingest"] >= 1 and processed["infer"] >= 1 and processed["merge"] >= 1

    gateway = client.http.get("/metrics").text
    promtool_check(gateway)
    found = parse(gateway)
    assert found["maskline_build_info"][0][0] == {"service": "gateway", "version": found["maskline_build_info"][0][0]["version"]}
    assert found["maskline_platform_view"][0][1] == 1  # the lone gateway holds the lease: it exports the platform's view
    assert found["maskline_queue_pending"] and found["maskline_jobs_total"]
    # NATS health as the gateway sees it: connected, every stream led, one current copy (a lone server)
    assert found["maskline_nats_connected"][0][1] == 1
    assert {labels["stream"] for labels, _ in found["maskline_stream_leader"]} >= {"SEG", "MODEL", "DLQ"}
    assert all(value == 1 for _, value in found["maskline_stream_leader"])
    assert {(labels["state"], value) for labels, value in found["maskline_stream_replicas"]} == {
        ("current", 1),
        ("lagging", 0),
        ("offline", 0),
    }
    routes = {labels["path"] for labels, _ in found["maskline_http_requests_total"]}
    assert "/v1/segmentations" in routes and not [r for r in routes if "shapes" in r or len(r) > 80]
    assert max(float(labels["le"]) for labels, _ in found["maskline_stage_seconds_bucket"] if labels["le"] != "+Inf") >= 3600
    client.http.get("/v1/no-such-route-" + "x" * 40)  # a scan of random paths adds no series
    again = parse(client.http.get("/metrics").text)
    assert not [labels for labels, _ in again["maskline_http_requests_total"] if "no-such-route" in labels["path"]]
