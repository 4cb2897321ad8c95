"""HTTP → gateway → NATS → ingest → infer (Triton) → merge → artifacts, on the real embedded stack."""

from __future__ import annotations

import io
import json
import re
import time

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from maskline.client import JsonClient
from maskline.models.starter import shapes

pytestmark = pytest.mark.e2e


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


def test_synthetic_image_gives_the_known_mask_overlay_and_regions(client: JsonClient) -> None:
    image, truth = shapes.sample(np.random.default_rng(2024), size=256)
    job = client.submit(png_bytes(image), filename="known.png", wait=60)

    assert job["status"] == "completed", job
    assert (job["width"], job["height"]) == (256, 256)
    assert job["model"] == {
        "name": "shapes-unet",
        "version": 1,
        "precision": "fp32",
        "owner": "maskline",
        "alias": "stable",
        "canary": False,
    }
    assert set(job["artifacts"]) == {"mask", "overlay", "regions"}
    assert {"ingest", "infer", "triton", "merge"} <= set(job["timings_ms"])

    mask = np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))
    assert mask.shape == (256, 256) and mask.dtype == np.uint8
    for class_id in range(1, len(shapes.LABELS)):
        if (truth == class_id).sum() > 50:
            assert iou(mask == class_id, truth == class_id) > 0.85, shapes.LABELS[class_id]
    assert (mask == truth).mean() > 0.97

    overlay = np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "overlay"))))
    assert overlay.shape == (256, 256, 3)
    assert np.abs(overlay.astype(int) - image.astype(int))[mask == 0].max() == 0  # background untouched
    assert np.abs(overlay.astype(int) - image.astype(int))[mask > 0].mean() > 5  # objects tinted

    doc = json.loads(client.artifact(job["id"], "regions"))
    assert doc["image"] == {"width": 256, "height": 256}
    assert doc["labels"] == list(shapes.LABELS)
    assert len(doc["regions"]) == job["regions"] >= 1
    union = np.zeros_like(mask, dtype=bool)
    for region in doc["regions"]:
        decoded = coco_mask.decode({"size": region["rle"]["size"], "counts": region["rle"]["counts"].encode()})
        assert decoded.sum() == region["area"]
        assert (mask[decoded.astype(bool)] == region["class_id"]).all()
        x, y, w, h = region["bbox"]
        ys, xs = np.nonzero(decoded)
        assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert region["polygon"] and len(region["polygon"][0]) >= 6
        assert 0.5 < region["score"] <= 1.0
        union |= decoded.astype(bool)
    assert (union == (mask > 0)).all()


def test_async_job_answers_202_with_location_then_completes(client: JsonClient) -> None:
    image, _ = shapes.sample(np.random.default_rng(7), size=200)
    response = client.http.post(
        "/v1/segmentations", files={"image": ("a.png", png_bytes(image), "image/png")}, data={"outputs": "mask,regions"}
    )
    assert response.status_code == 202
    location = response.headers["location"]
    assert location == f"/v1/segmentations/{response.json()['id']}"
    deadline = time.monotonic() + 60
    while (status := client.http.get(location).json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["status"] == "completed"
    assert set(status["artifacts"]) == {"mask", "regions"}
    assert client.http.get(f"{location}/overlay").status_code == 404


def test_sample_images_are_segmented_visibly_right(client: JsonClient, samples) -> None:  # type: ignore[no-untyped-def]
    for name in ("shapes-1", "shapes-2", "shapes-3"):
        job = client.submit(samples / f"{name}.png", wait=60)
        mask = np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))
        truth = np.asarray(Image.open(samples / f"{name}.mask.png"))
        assert (mask == truth).mean() > 0.97, name


def test_idempotency_key_returns_the_same_job(client: JsonClient) -> None:
    image, _ = shapes.sample(np.random.default_rng(99), size=128)
    headers = {"Idempotency-Key": "order-123"}
    files = {"image": ("a.png", png_bytes(image), "image/png")}
    first = client.http.post("/v1/segmentations", params={"wait": 60}, files=files, headers=headers).json()
    second = client.http.post("/v1/segmentations", params={"wait": 60}, files=files, headers=headers).json()
    assert first["id"] == second["id"]


def test_another_tenant_sees_nothing(client: JsonClient, other_tenant: JsonClient) -> None:
    image, _ = shapes.sample(np.random.default_rng(5), size=128)
    job = client.submit(png_bytes(image), wait=60)
    for path in (f"/v1/segmentations/{job['id']}", f"/v1/segmentations/{job['id']}/mask", f"/v1/audit?job={job['id']}"):
        response = other_tenant.http.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/problem+json")


def test_openapi_is_served_with_readable_ids_binary_files_and_problems(client: JsonClient) -> None:
    spec = client.http.get("/schema/openapi.json").json()
    assert "/v1/segmentations" in spec["paths"]
    assert "/v1/models" in spec["paths"]
    operations = [op for item in spec["paths"].values() for op in item.values() if isinstance(op, dict) and "responses" in op]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z][A-Za-z0-9]+", i) for i in ids), ids
    assert "segmentationsSubmit" in ids or "segmentationsCreate" in ids, ids
    artifact = spec["paths"]["/v1/segmentations/{job_id}/{artifact}"]["get"]["responses"]["200"]["content"]
    assert artifact["image/png"]["schema"] == {"type": "string", "format": "binary"}
    # Each refusal by its status, with its codes (tests/services/gateway/test_openapi.py); 5XX for the rest.
    assert all("5XX" in op["responses"] and "4XX" not in op["responses"] for op in operations)
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
