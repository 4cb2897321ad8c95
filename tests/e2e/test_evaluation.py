"""Evaluation and comparison through the running stack: a version scored on a labelled dataset by
infer (through Triton), checked against the same images segmented by the normal path; a quantize
job that names a held-out dataset evaluates its result; versions compared side by side; a
promotion rule on the evaluations."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import WEIGHTS, shapes
from tests.e2e.accessibility import violations
from tests.e2e.conftest import ARTIFACTS, Account, audited_trail, cli, recorded, sign_in, until
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e
LABELS = list(shapes.LABELS)
ARCHITECTURE = "maskline.models.starter.unet:UNet"
IMAGES = 6


@pytest.fixture(scope="module")
def labelled(client: JsonClient) -> tuple[str, list[tuple[bytes, np.ndarray]]]:
    rng = np.random.default_rng(2024)
    pairs = [shapes.sample(rng, 128) for _ in range(IMAGES)]
    for i, (image, mask) in enumerate(pairs):
        client.upload_dataset_file("ev-held-out", "images", png_bytes(image), f"e{i}.png")
        client.upload_dataset_file("ev-held-out", "masks", png_bytes(mask), f"e{i}.png")
    return "ev-held-out", [(png_bytes(image), mask) for image, mask in pairs]


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    return np.bincount(truth.ravel() * classes + predicted.ravel(), minlength=classes * classes).reshape(classes, classes)


def finished(client: JsonClient, job: dict[str, Any]) -> dict[str, Any]:
    done = client.wait_job(job["id"], timeout=300)
    assert done["status"] == "completed", done.get("error")
    return done


def test_an_evaluation_scores_what_serving_segments(client: JsonClient, labelled: tuple[str, list[Any]]) -> None:
    dataset, pairs = labelled
    done = finished(client, client.evaluate("shapes-unet", 1, dataset=dataset, owner="maskline"))
    assert done["kind"] == "evaluation" and done["progress"]["done"] == IMAGES
    result = client.evaluations("shapes-unet", 1, owner="maskline")[0]
    assert result["images"] == IMAGES and result["model"] == {"name": "shapes-unet", "version": 1, "owner": "maskline"}
    assert result["job_id"] == done["id"] and result["code_version"] and len(result["dataset_sha256"]) == 64
    assert [c["label"] for c in result["classes"]] == LABELS
    assert result["latency_ms"] > 0 and 0.0 < result["boundary_f1"] <= 1.0

    # the same images through the segmentation path: the same confusion, so the same numbers
    total = np.zeros((4, 4), np.int64)
    for image, truth in pairs:
        job = client.submit(image, wait=60, model="shapes-unet", owner="maskline")
        mask = np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))
        total += confusion(truth.astype(np.int64), mask.astype(np.int64), 4)
    inter = np.diag(total)
    ious = inter / (total.sum(0) + total.sum(1) - inter)
    assert [c["iou"] for c in result["classes"]] == pytest.approx(list(ious), abs=1e-5)
    assert result["miou"] == pytest.approx(float(ious.mean()), abs=1e-5)
    assert result["pixel_accuracy"] == pytest.approx(float(inter.sum() / total.sum()), abs=1e-5)
    assert [c["pixels"] for c in result["classes"]] == [int(n) for n in total.sum(1)]


def test_a_dataset_without_masks_fails_the_job_with_a_reason(client: JsonClient) -> None:
    client.upload_dataset_file("ev-unlabelled", "images", png_bytes(shapes.sample(np.random.default_rng(1), 64)[0]), "u.png")
    job = client.wait_job(client.evaluate("shapes-unet", 1, dataset="ev-unlabelled", owner="maskline")["id"], timeout=120)
    assert job["status"] == "failed" and job["error"]["code"] == "no_labelled_images"
    with pytest.raises(ApiError) as err:  # someone else's model is not there to evaluate
        client.evaluate("b-private", 1, dataset="ev-unlabelled", owner="tenant-b")
    assert err.value.status == 404


def test_a_quantize_job_evaluates_its_result_and_versions_compare(
    browser: WebDriver, client: JsonClient, stack: Stack, labelled: tuple[str, list[Any]], console_owner: Account
) -> None:
    dataset, pairs = labelled
    fp32 = client.register_model(
        WEIGHTS,
        name="ev-model",
        labels=LABELS,
        input_size=(128, 128),
        architecture=ARCHITECTURE,
        architecture_kwargs={"classes": 4, "width": 16},
    )
    finished(client, client.evaluate("ev-model", fp32["version"], dataset=dataset))
    job = client.quantize("ev-model", fp32["version"], dataset=dataset, method="minmax", max_images=6, evaluate_on=dataset)
    quantized = finished(client, job)
    evaluation_job = finished(client, {"id": recorded(client, f"{job['id']}-eval")})  # the follow-up the quantize job asked for
    int8_version = int(quantized["links"]["model"].rsplit("/", 1)[-1])
    assert evaluation_job["links"]["model"].endswith(f"/ev-model/{int8_version}")

    view = client.compare("ev-model", [fp32["version"], int8_version], dataset)
    rows = {row["version"]: row for row in view["versions"]}
    assert rows[fp32["version"]]["method"] == "registered" and rows[fp32["version"]]["aliases"] == ["stable", "stable-fp32"]
    assert rows[int8_version]["method"] == "quantize: minmax" and rows[int8_version]["parent"] == f"ev-model/{fp32['version']}"
    assert rows[int8_version]["size_bytes"] < rows[fp32["version"]]["size_bytes"]
    a, b = (rows[v]["evaluation"] for v in (fp32["version"], int8_version))
    assert a["dataset_sha256"] == b["dataset_sha256"] and b["precision"] == "int8"
    assert abs(a["miou"] - b["miou"]) < 0.05  # int8 keeps the float model's quality on held-out data
    b_miou = b["miou"]

    # the difference of the two versions' masks, as pictures: the count is the served masks' own
    assert sorted(view["differences"]) == [f"e{i}.png" for i in range(IMAGES)]
    picture = client.http.get(view["differences"]["e0.png"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    drawn = Image.open(io.BytesIO(picture.content))
    assert drawn.size == (4 * 128 + 3 * 4, 128 + 14)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "mask-difference.png").write_bytes(picture.content)
    served = [
        np.asarray(
            Image.open(
                io.BytesIO(client.artifact(client.submit(pairs[0][0], wait=60, model="ev-model", version=v)["id"], "mask"))
            )
        )
        for v in (fp32["version"], int8_version)
    ]
    assert int(picture.headers["X-Pixels-Differ"]) == int((served[0] != served[1]).sum())

    # the comparison page: the same table, and the pictures
    page = browser
    sign_in(page, stack, console_owner, f"/compare?model=ev-model&versions={fp32['version']},{int8_version}&dataset={dataset}")
    until(page, lambda: len(page.find_elements(By.CSS_SELECTOR, "#pictures img")) == IMAGES, 30, "the pictures")
    assert page.find_element(By.ID, "error").text == ""
    until(
        page,
        lambda: page.execute_script("return [...document.querySelectorAll('#pictures img')].every(i => i.naturalWidth > 0)"),
        10,
        "drawn",
    )
    row = page.find_element(By.CSS_SELECTOR, f'#versions-table tr[data-version="{int8_version}"]').text
    assert "int8" in row and "quantize: minmax" in row and f"{b_miou:.4f}" in row
    captions = [c.text for c in page.find_elements(By.CSS_SELECTOR, "#pictures figcaption")]
    assert captions[0] == f"e0.png: {int(picture.headers['X-Pixels-Differ'])} pixels differ"
    assert violations(page) == []

    table = cli(stack, "models", "compare", "ev-model", "--versions", f"{fp32['version']},{int8_version}", "--dataset", dataset)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:6] == ["version", "precision", "method", "aliases", "size_mb", "miou"]
    assert lines[0].split()[-4:] == LABELS
    assert lines[2].split()[:2] == [f"v{int8_version}", "int8"]

    # the promotion rule on the evaluations: the int8 version may become stable if it scores as well
    rule = {"require_evaluation": dataset}
    if b["miou"] >= a["miou"]:  # which side holds depends on the numbers: both sides are checked against them
        assert client.promote("ev-model", "stable", int8_version, **rule)["alias"]["version"] == int8_version
        trail = audited_trail(client, "/v1/models/ev-model/aliases/stable/trail", lambda t: t[-1]["event"]["data"]["rule"] != "")
        assert "mIoU on ev-held-out" in trail[-1]["event"]["data"]["rule"]
    else:
        with pytest.raises(ApiError) as err:
            client.promote("ev-model", "stable", int8_version, **rule)
        assert err.value.problem["code"] == "promotion_refused" and "mIoU on ev-held-out" in err.value.problem["detail"]
