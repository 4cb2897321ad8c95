"""The bus as a 3-node NATS cluster on loopback (streams and buckets R3): the leader of the SEG
stream is SIGKILLed under load and kept down while the cluster elects another.

A client that does what the API asks (an Idempotency-Key per image; on 503 wait Retry-After and
send the same request again) must lose nothing: every image ends accepted and completed, exactly
once, no job exists on the bus that the client was not told about, and no answer is a 500."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from maskline.contracts import seg_v1
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from maskline.shared.bus import connect, read_stream
from maskline.shared.config import RuntimeSettings

pytestmark = pytest.mark.e2e

KEY = "cluster-key"
TENANT = "cluster"
DOWN_S = 12.0
"""How long the killed leader stays down: past the election (a few seconds) and the clients'
reconnect, so the survivors carry the load on their own for a while."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = on_free_ports(StackSettings(), str(tmp_path_factory.mktemp("cluster")), nats_cluster=3, api_keys=f"{KEY}:{TENANT}")
    stack = Stack(settings, extra_env={"MASKLINE_MAX_BACKLOG": "200"})
    stack.up()
    yield stack
    stack.down()


def png(seed: int) -> bytes:
    image, _ = shapes.sample(np.random.default_rng(seed), size=96)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Client:
    """Submits one image after another, each with its own Idempotency-Key, retrying on 503."""

    url: str
    answers: Counter[int] = field(default_factory=Counter)
    without_retry_after: int = 0
    accepted: dict[str, str] = field(default_factory=dict)
    """Idempotency-Key → job id."""
    gave_up: list[str] = field(default_factory=list)

    def submit(self, seed: int) -> None:
        key = uuid.uuid4().hex
        files = {"image": ("a.png", png(seed), "image/png")}
        data = {"tta": "true"} if seed % 3 == 2 else None  # the fan-out through augment too
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
            while time.monotonic() < deadline:
                response = http.post("/v1/segmentations", files=files, data=data, headers={"Idempotency-Key": key})
                self.answers[response.status_code] += 1
                if response.status_code in (200, 202):
                    self.accepted[key] = response.json()["id"]
                    return
                if response.status_code != 503:
                    break
                retry = response.headers.get("retry-after")
                self.without_retry_after += retry is None
                time.sleep(min(float(retry or 1), 2.0))
        self.gave_up.append(key)

    def stream(self, rate_per_s: float, seconds: float) -> None:
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            self.submit(5000 + n)
            n += 1
            time.sleep(1 / rate_per_s)


async def requested_jobs(settings: RuntimeSettings) -> Counter[str]:
    """Job id → how many requests for it the SEG stream holds (the bus's own record)."""
    bus = await connect(settings, "test-cluster", identity="admin")
    try:
        messages = await read_stream(bus.js, "SEG", f"{seg_v1.REQUESTED}.{TENANT}")
        return Counter(json.loads(m.data)["job_id"] for m in messages)
    finally:
        await bus.close()


def completions(http: httpx.Client, job: str) -> int:
    trail = http.get("/v1/audit", params={"job": job}).json()["events"]
    return sum(r["type"] == seg_v1.COMPLETED for r in trail)


def behind(cluster: Stack, stream: str) -> float:
    """Copies of `stream` offline or lagging, as the gateway's /metrics says (`maskline_stream_replicas`)."""
    text = httpx.get(f"{cluster.gateway_url}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "maskline_stream_replicas" and sample.labels["stream"] == stream and sample.labels["state"] != "current"
    )


def test_killing_the_seg_stream_leader_under_load_loses_duplicates_and_strands_nothing(cluster: Stack) -> None:
    admin = cluster.client_settings("admin")
    assert len(cluster.nats_nodes) == 3 and cluster.nats_url.count(",") == 2
    program = cluster.stream_leader("SEG")
    assert program.startswith("nats-")

    client = Client(cluster.gateway_url)
    load = threading.Thread(target=client.stream, args=(3.0, 30.0), daemon=True)
    load.start()
    time.sleep(6.0)
    killed = time.monotonic()
    cluster.kill_service(program)
    cluster.stop_service(program)  # supervisord would start it again at once: keep it down
    # Elections took 5.2 s and 10.4 s in `bench.chaos`, and once more than 30 s in a suite run on the
    # 2-core machine (cause not pinned down). What this test holds the platform to is no duplicate and
    # no stranded job, not the election's speed.
    wait_until(lambda: cluster.stream_leader("SEG") not in ("", program), 90, "a new SEG leader")
    elected_s = time.monotonic() - killed
    # the gateway's metrics see the cluster run without its margin (MasklineStreamReplicasBehind)
    wait_until(lambda: behind(cluster, "SEG") >= 1, DOWN_S + 20, "the SEG copy on the killed server reported offline")
    time.sleep(max(0.0, DOWN_S - (time.monotonic() - killed)))
    cluster.start_service(program)
    load.join()

    http = httpx.Client(base_url=cluster.gateway_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    jobs = set(client.accepted.values())
    wait_until(lambda: all(http.get(f"/v1/segmentations/{j}").json()["status"] == "completed" for j in jobs), 180, "jobs done")
    on_bus = asyncio.run(requested_jobs(admin))
    duplicated = [job for job in jobs if completions(http, job) != 1]
    http.close()

    print(f"killed {program}: new SEG leader after {elected_s:.1f} s; answers {dict(client.answers)}, ", end="")
    print(f"accepted {len(jobs)}, on the bus {len(on_bus)}, duplicated {len(duplicated)}")
    assert len(jobs) >= 40 and not client.gave_up
    assert client.answers[500] == 0 and set(client.answers) <= {200, 202, 503}
    assert client.without_retry_after == 0
    assert not duplicated
    assert set(on_bus) == jobs  # no ghost: every job the bus holds is one a client was told of
