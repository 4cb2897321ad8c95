"""A proxy that forwards a request and then answers 502 (the gateway did the work; its answer was
lost): every client — typed, JSON, the CLI — retries under the same Idempotency-Key and gets the
first answer again, marked `Idempotent-Replayed`. No job starts twice and no finished job is
reported as failed. One test per kind of job-starting request."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest
import stamina

from maskline.client import Client, ClientSettings, JsonClient
from maskline.client.retries import RetryPolicy
from maskline.client.typed import Calls
from maskline.contracts.http_v1 import EvaluateBody, ExpandRequest, QuantizeBody
from maskline.contracts.model_v1 import VersionRef
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import WEIGHTS, shapes
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e
LABELS, SIZE = list(shapes.LABELS), (128, 128)
QUICK = RetryPolicy(attempts=4, wait_initial_s=0.1, wait_max_s=2.0, wait_jitter_s=0.1)


@dataclass
class LossyProxy:
    """Forwards everything to the gateway; the first answer to each Idempotency-Key (and to every
    POST without one) is swallowed after the gateway sent it, and a 502 goes back instead."""

    upstream: str
    lost: list[httpx.Response] = field(default_factory=list)
    replayed: list[httpx.Response] = field(default_factory=list)
    keyless_posts: int = 0
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with httpx.Client(base_url=self.upstream, timeout=180) as http:
            answer = http.request(method, path, headers=headers, content=body)
        key = headers.get("Idempotency-Key") or headers.get("idempotency-key")
        with self._lock:
            first = method == "POST" and (key is None or key not in self._seen)
            if key is not None:
                self._seen.add(key)
            self.keyless_posts += method == "POST" and key is None
            if first:
                self.lost.append(answer)
                return 502, {"content-type": "text/html"}, b"<html>502 Bad Gateway</html>"
            if answer.headers.get("idempotent-replayed") == "true":
                self.replayed.append(answer)
        hop_by_hop = ("content-length", "transfer-encoding", "connection")
        passed = {k: v for k, v in answer.headers.items() if k.lower() not in hop_by_hop}
        return answer.status_code, passed, answer.content


@pytest.fixture(scope="module")
def proxy(stack: Stack) -> Iterator[tuple[LossyProxy, str]]:
    lossy = LossyProxy(stack.gateway_url)

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            status, answer_headers, content = lossy.forward(self.command, self.path, headers, body)
            self.send_response(status)
            for name, value in answer_headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield lossy, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module", autouse=True)
def settled(proxy: tuple[LossyProxy, str], client: JsonClient) -> Iterator[None]:
    """Every job these tests started ends before the next module's tests run (they read the
    workers' readiness): the jobs are the lost answers' own."""
    yield
    for answer in proxy[0].lost:
        job_id = answer.json().get("id") if answer.headers.get("content-type", "").startswith("application/json") else None
        if job_id and answer.status_code == 202:
            client.wait_job(job_id, timeout=300)


@pytest.fixture(scope="module")
def typed(proxy: tuple[LossyProxy, str]) -> Iterator[Client]:
    with (
        stamina.set_testing(True, attempts=4, cap=True),  # no backoff: the proxy never refuses twice
        Client(ClientSettings(url=proxy[1], api_key="key-a", retries=3, backoff_s=0.1)) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def dataset(client: JsonClient) -> str:
    rng = np.random.default_rng(7)
    for i in range(3):
        picture, mask = shapes.sample(rng, 128)
        client.upload_dataset_file("lossy", "images", png_bytes(picture), f"i{i}.png")
        client.upload_dataset_file("lossy", "masks", png_bytes(mask), f"i{i}.png")
    return "lossy"


@pytest.fixture(scope="module")
def registered(typed: Client, proxy: tuple[LossyProxy, str]) -> int:
    """A version registered through the proxy: the first answer lost, the same version given again."""
    version = typed.register_model(WEIGHTS.read_bytes(), name="lossy", labels=LABELS, input_size=SIZE)
    lost = msgspec.json.decode(proxy[0].lost[-1].content)
    assert proxy[0].lost[-1].status_code == 201 and version.version == lost["version"]  # type: ignore[union-attr]
    return int(lost["version"])


def same_job(proxy: LossyProxy, answer_id: str) -> None:
    """The answer the client got is the job the lost answer named (not a second one)."""
    first = proxy.lost[-1].json()
    assert first["id"] == answer_id, (first, answer_id)
    assert proxy.replayed and proxy.replayed[-1].json()["id"] == answer_id


def test_registration(typed: Client, registered: int, proxy: tuple[LossyProxy, str]) -> None:
    assert [v.version for v in typed.models() if v.name == "lossy"] == [registered]  # one version, not two
    assert proxy[0].replayed[-1].status_code == 201


def test_segmentation(typed: Client, proxy: tuple[LossyProxy, str]) -> None:
    picture = png_bytes(shapes.sample(np.random.default_rng(3), 96)[0])
    job = typed.submit(picture, wait_s=60)
    assert job.status == "completed" and proxy[0].lost[-1].json()["id"] == job.id


def test_replay(typed: Client, proxy: tuple[LossyProxy, str], client: JsonClient) -> None:
    done = client.submit(png_bytes(shapes.sample(np.random.default_rng(4), 96)[0]), wait=60)
    assert done["status"] == "completed"
    replay = typed.send(Calls.replay(done["id"], wait_s=60))
    assert replay.reproduced
    assert proxy[0].lost[-1].json()["replay"] == replay.replay == proxy[0].replayed[-1].json()["replay"]


def test_merge(typed: Client, registered: int, proxy: tuple[LossyProxy, str]) -> None:
    job = typed.merge_models([VersionRef("lossy", registered), VersionRef("lossy", registered)], name="lossy-merged")
    same_job(proxy[0], job.id)


def test_quantize(typed: Client, registered: int, dataset: str, proxy: tuple[LossyProxy, str]) -> None:
    body = QuantizeBody(model=VersionRef("lossy", registered), dataset=dataset, max_images=2)
    same_job(proxy[0], typed.send(Calls.quantize(body)).id)


def test_evaluation(typed: Client, registered: int, dataset: str, proxy: tuple[LossyProxy, str]) -> None:
    job = typed.send(Calls.evaluate("lossy", registered, EvaluateBody(dataset=dataset, max_images=2)))
    same_job(proxy[0], job.id)


def test_dataset_expansion(typed: Client, dataset: str, proxy: tuple[LossyProxy, str]) -> None:
    job = typed.send(Calls.expand_dataset(dataset, ExpandRequest(target="lossy-expanded", variants=("flip",))))
    same_job(proxy[0], job.id)


def test_the_json_client_retries_under_one_key_too(proxy: tuple[LossyProxy, str], registered: int) -> None:
    with JsonClient(proxy[1], api_key="key-a", retry=QUICK) as json_client:
        job = json_client.merge_models([("lossy", registered), ("lossy", registered)], name="lossy-merged-json")
    same_job(proxy[0], job["id"])


def test_the_cli_reports_the_finished_job_not_a_failure(proxy: tuple[LossyProxy, str], tmp_path: Path) -> None:
    picture = tmp_path / "p.png"
    picture.write_bytes(png_bytes(shapes.sample(np.random.default_rng(5), 96)[0]))
    before = len(proxy[0].lost)
    argv = ["--url", proxy[1], "--api-key", "key-a", "--json", "submit", str(picture), "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-m", "maskline.cli", *argv], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(proxy[0].lost) == before + 1 and proxy[0].lost[-1].json()["id"] in done.stdout
    assert proxy[0].keyless_posts == 0  # every POST of every client carried a key
