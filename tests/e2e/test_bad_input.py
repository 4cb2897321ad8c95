"""Bad input gets a clear problem+json (or a failed job with the reason) and blocks nothing else."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maskline.client import ApiError, JsonClient
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


def problem(client: JsonClient, body: bytes, name: str, content_type: str = "image/png", **params: object) -> tuple[int, dict]:
    response = client.http.post("/v1/segmentations", params=params, files={"image": (name, body, content_type)})
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.status_code, response.json()


def assert_next_good_job_completes(client: JsonClient) -> None:
    assert client.submit(good_png(), wait=60)["status"] == "completed"


def test_missing_or_unknown_api_key_is_401(client: JsonClient) -> None:
    response = client.http.get("/v1/segmentations/x", headers={"Authorization": ""})
    assert response.status_code == 401
    response = client.http.get("/v1/segmentations/x", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["detail"] == "unknown API key"


def test_text_file_is_415(client: JsonClient) -> None:
    status, body = problem(client, b"hello, I am not an image\n" * 10, "notes.txt", "text/plain")
    assert status == 415
    assert "not an image" in body["detail"]
    assert_next_good_job_completes(client)


def test_pixel_bomb_is_413_before_decoding(client: JsonClient) -> None:
    status, body = problem(client, pixel_bomb_png(), "bomb.png")
    assert status == 413
    assert "900000000 pixels; the limit is 4000000 pixels" in body["detail"]  # the configured limit
    assert body["code"] == "image_too_large"
    assert_next_good_job_completes(client)


def test_body_over_the_limit_is_413_with_a_code(client: JsonClient) -> None:
    status, body = problem(client, b"\x89PNG" + b"\x00" * (MAX_UPLOAD + 10), "big.png")
    assert status == 413 and body["code"] == "too_large"


def flat_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_pixel_budget_counts_tta_variants(client: JsonClient) -> None:
    big = flat_png(2000, 2000)  # 4 MP: within MASKLINE_MAX_PIXELS, and within the request budget alone
    files = {"image": ("big.png", big, "image/png")}
    response = client.http.post("/v1/segmentations", files=files, data={"tta": "true"})  # + 5 variants at 1024 px
    status, body = response.status_code, response.json()
    assert status == 413 and body["code"] == "request_too_large"
    assert "the limit is 6000000" in body["detail"]
    job = client.submit(big, filename="big.png", wait=60)
    assert job["status"] == "completed" and (job["width"], job["height"]) == (2000, 2000)


def test_a_corrupt_png_is_called_corrupt_not_unsupported(client: JsonClient) -> None:
    good = good_png()
    bad = good[:29] + b"\x00\x00\x00\x00" + good[33:]  # the header chunk's CRC
    status, body = problem(client, bad, "crc.png")
    assert status == 422 and body["code"] == "corrupt_image" and body["detail"].startswith("corrupt PNG")


def test_a_gif_is_segmented_from_its_first_frame(client: JsonClient) -> None:
    image, _ = shapes.sample(np.random.default_rng(5), size=128)
    buf = io.BytesIO()
    Image.fromarray(image).convert("P").save(buf, format="GIF")
    job = client.submit(buf.getvalue(), filename="shape.gif", wait=60)
    assert job["status"] == "completed"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/no-such-thing", 404, "not_found"),
        ("DELETE", "/v1/segmentations", 405, "method_not_allowed"),
        ("POST", "/v1/models/merges", 400, "invalid_request"),
    ],
)
def test_framework_errors_are_problems_with_a_code(client: JsonClient, method: str, path: str, status: int, code: str) -> None:
    response = client.http.request(method, path, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def test_truncated_png_fails_the_job_with_the_reason_and_the_next_job_goes_through(client: JsonClient) -> None:
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


def test_invalid_options_are_422(client: JsonClient) -> None:
    response = client.http.post(
        "/v1/segmentations", files={"image": ("a.png", good_png(), "image/png")}, data={"outputs": "mask,hologram"}
    )
    assert response.status_code == 422
    assert "outputs" in response.json()["detail"]


def test_unknown_model_fails_with_model_not_found(client: JsonClient) -> None:
    with pytest.raises(ApiError) as err:
        client.submit(good_png(), wait=60, model="no-such-model")
    assert err.value.status == 422
    assert err.value.problem["code"] == "model_not_found"


def test_unknown_job_is_404(client: JsonClient) -> None:
    response = client.http.get("/v1/segmentations/0123456789abcdef")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_model_form_with_undecodable_or_misplaced_parts_is_a_problem_not_a_500(client: JsonClient) -> None:
    form = {"name": "junk", "labels": "a,b"}
    binary = client.http.post("/v1/models", data=form, files={"description": (None, b"\x9a\xff not utf-8")})
    assert (binary.status_code, binary.json()["code"]) == (400, "invalid_request")
    as_text = client.http.post("/v1/models", data=form, files={"weights": (None, b"not a file part")})
    assert (as_text.status_code, as_text.json()["code"]) == (400, "invalid_request")  # the form's own validation
