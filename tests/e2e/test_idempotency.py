"""Idempotency-Key as the IETF draft specifies it: same key and request → the same job and no second
upload; same key, other request → 422; concurrent requests → 409, never a mixed upload; too long → 400."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from maskline.client import JsonClient
from maskline.models.starter import shapes
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e


def image(seed: int) -> bytes:
    return png_bytes(shapes.sample(np.random.default_rng(seed), 96)[0])


def post(client: JsonClient, body: bytes, key: str, wait: float = 0) -> tuple[int, dict]:
    response = client.http.post(
        "/v1/segmentations",
        params={"wait": wait},
        files={"image": ("a.png", body, "image/png")},
        headers={"Idempotency-Key": key},
    )
    return response.status_code, response.json()


def uploads_of(client: JsonClient, job_id: str) -> list[str]:
    return [f["path"] for f in client.files("inputs")["files"] if f["path"].startswith(f"{job_id}/upload")]


def test_the_same_key_and_request_is_the_same_job_without_a_second_upload(client: JsonClient) -> None:
    key, body = uuid.uuid4().hex, image(1)
    status, first = post(client, body, key, wait=60)
    assert status == 200 and first["status"] == "completed"
    status, again = post(client, body, key)
    assert status == 200 and again["id"] == first["id"]
    assert len(uploads_of(client, first["id"])) == 1


def test_the_same_key_with_another_image_is_refused(client: JsonClient) -> None:
    key = uuid.uuid4().hex
    assert post(client, image(2), key)[0] == 202
    status, problem = post(client, image(3), key)
    assert status == 422 and problem["code"] == "idempotency_key_reused"


def test_concurrent_requests_with_one_key_never_mix_uploads(client: JsonClient) -> None:
    key = uuid.uuid4().hex
    bodies = [image(10 + i) for i in range(4)]
    results: list[tuple[int, dict]] = []
    barrier = threading.Barrier(len(bodies))

    def send(body: bytes) -> None:
        barrier.wait()
        results.append(post(client, body, key))

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r for s, r in results if s == 202]
    assert len(accepted) == 1, results  # exactly one request owns the key
    assert all(s in (202, 409, 422) for s, _ in results)
    assert {r["code"] for s, r in results if s != 202} <= {"idempotency_key_in_progress", "idempotency_key_reused"}
    job = client.status(accepted[0]["id"])
    stored = uploads_of(client, job["id"])
    assert len(stored) == 1  # one upload, and it is the winner's image
    assert client.download_file("inputs", stored[0]) in bodies


@pytest.mark.parametrize("key", ["", "x" * 256, "x" * 20_000])
def test_keys_must_be_1_to_255_characters(client: JsonClient, key: str) -> None:
    status, problem = post(client, image(4), key)
    assert status == 400 and problem["code"] == "invalid_idempotency_key", problem
