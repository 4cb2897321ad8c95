"""Bad input gets a clear problem+json (or a failed job with the reason) and blocks nothing else."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maskline.client import ApiError, Client
from maskline.models.starter import shapes
from tests.e2e.conftest import MAX_UPLOAD

pytestmark = pytest.mark.e2e


def good_png() -> bytes:
    image, _ = shapes.sample(np.random.default_rng(3), size=128)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def pixel_bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny, valid-looking PNG whose header claims 900 megapixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


def problem(client: Client, body: bytes, name: str, content_type: str = "image/png", **params: object) -> tuple[int, dict]:
    response = client.http.post("/v1/segmentations", params=params, files={"image": (name, body, content_type)})
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.status_code, response.json()


def assert_next_good_job_completes(client: Client) -> None:
    assert client.submit(good_png(), wait=60)["status"] == "completed"


def test_missing_or_unknown_api_key_is_401(client: Client) -> None:
    response = client.http.get("/v1/segmentations/x", headers={"Authorization": ""})
    assert response.status_code == 401
    response = client.http.get("/v1/segmentations/x", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["detail"] == "unknown API key"


def test_text_file_is_415(client: Client) -> None:
    status, body = problem(client, b"hello, I am not an image\n" * 10, "notes.txt", "text/plain")
    assert status == 415
    assert "not an image" in body["detail"]
    assert_next_good_job_completes(client)


def test_pixel_bomb_is_413_before_decoding(client: Client) -> None:
    status, body = problem(client, pixel_bomb_png(), "bomb.png")
    assert status == 413
    assert "900000000 pixels" in body["detail"]
    assert body["code"] == "image_too_large"
    assert_next_good_job_completes(client)


def test_body_over_the_limit_is_413(client: Client) -> None:
    status, _ = problem(client, b"\x89PNG" + b"\x00" * (MAX_UPLOAD + 10), "big.png")
    assert status == 413


def test_truncated_png_fails_the_job_with_the_reason_and_the_next_job_goes_through(client: Client) -> None:
    data = good_png()
    status, body = problem(client, data[: len(data) // 2], "cut.png", wait=60)
    assert status == 422
    assert body["code"] == "corrupt_image"
    assert "truncated" in body["detail"] or "corrupt" in body["detail"]
    job_id = body["detail"].split()[1]
    state = client.status(job_id)
    assert state["status"] == "failed"
    assert state["error"]["stage"] == "ingest"
    assert_next_good_job_completes(client)


def test_invalid_options_are_422(client: Client) -> None:
    response = client.http.post(
        "/v1/segmentations", files={"image": ("a.png", good_png(), "image/png")}, data={"outputs": "mask,hologram"}
    )
    assert response.status_code == 422
    assert "outputs" in response.json()["detail"]


def test_unknown_model_fails_with_model_not_found(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(good_png(), wait=60, model="no-such-model")
    assert err.value.status == 422
    assert err.value.problem["code"] == "model_not_found"


def test_unknown_job_is_404(client: Client) -> None:
    response = client.http.get("/v1/segmentations/0123456789abcdef")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
