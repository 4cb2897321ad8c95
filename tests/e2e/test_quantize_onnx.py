"""Quantizing a model without its source code: the bundled ONNX person model into a QDQ version,
through the running stack, with the platform's calibrators and the STEP / CROSS reports on the
ONNX graph; the INT8 version served by Triton."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from maskline.client import JsonClient
from maskline.models import person
from maskline.shared.images.codec import encode_png
from tests.e2e.test_real_models import mask_of
from tests.models.reference import miou

pytestmark = pytest.mark.e2e


def photos() -> list[bytes]:
    """Crops and flips of the bundled photo: a small calibration set of a person."""
    image = np.asarray(Image.open(io.BytesIO((person.FOLDER / "samples" / "astronaut.jpg").read_bytes())).convert("RGB"))
    views = [image, image[:, ::-1], image[:400, 50:450], image[100:, :400], image[::2, ::2], image[:, 60:460][:, ::-1]]
    return [encode_png(np.ascontiguousarray(v)) for v in views]


@pytest.fixture(scope="module")
def int8_person(client: JsonClient) -> dict[str, Any]:
    for i, data in enumerate(photos()):
        client.upload_dataset_file("people", "images", data, f"p{i}.png")
    job = client.quantize("person-selfie", 1, dataset="people", method="minmax", name="person-int8")
    done = client.wait_job(job["id"], timeout=300)
    assert done["status"] == "completed", done.get("error")
    return dict(client.http.get(done["links"]["model"]).json())


def test_an_onnx_model_is_quantized_to_qdq_and_served(client: JsonClient, int8_person: dict[str, Any]) -> None:
    model = int8_person
    assert (model["format"], model["precision"]) == ("onnx", "int8")
    assert model["lineage"][0]["name"] == "person-selfie" and model["preprocessing"] == {
        "resize": "stretch",
        **model["preprocessing"],
    }
    assert model["metrics"]["pixel_agreement"] > 0.9
    photo = photos()[0]
    fp32 = client.submit(photo, wait=90, model="person-selfie")
    int8 = client.submit(photo, wait=90, model="person-int8", version=model["version"])
    assert fp32["status"] == int8["status"] == "completed"
    assert miou(mask_of(client, fp32) == 1, mask_of(client, int8) == 1) > 0.9


def test_step_and_cross_reports_describe_the_onnx_graph(client: JsonClient, int8_person: dict[str, Any]) -> None:
    step = client.report("person-int8", int8_person["version"], "step")
    assert step["format"] == "onnx" and step["layers"]
    convs = [row for row in step["layers"] if row["type"] == "Conv"]
    assert convs and all(row["output_scale"] is None or row["output_scale"] > 0 for row in convs)
    cross = client.report("person-int8", int8_person["version"], "cross")
    assert 0 < len(cross["layers"]) <= 8
    worst = {row["layer"] for row in sorted(step["layers"], key=lambda r: r["error"]["sqnr_db"])[:8]}
    assert {row["layer"] for row in cross["layers"]} == worst
