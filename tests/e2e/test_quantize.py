"""Quantization through the running stack: INT8/HYBRID versions made by the quantize service,
served by the real Triton, selected per request; reports, graph, edits and failed jobs."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from typing import Any

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from maskline.client import ApiError, JsonClient
from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope, new_trace_id, now
from maskline.contracts.model_v1 import VersionRef
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.stack import Stack
from maskline.infra.receiver import Receiver
from maskline.models.starter import WEIGHTS, shapes
from maskline.shared.bus import connect
from tests.e2e.accessibility import violations
from tests.e2e.conftest import Account, cli, sign_in, until
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e
#: Stated bound: the INT8 mask covers the FP32 mask's classes with a mean IoU of at least 0.95.
IOU_BOUND = 0.95


def mask_of(client: JsonClient, image: bytes, **options: Any) -> tuple[np.ndarray, dict[str, Any]]:
    job = client.submit(image, wait=60, **options)
    assert job["status"] == "completed", job
    mask = np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))
    return mask, job


def mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    ious = [np.logical_and(a == c, b == c).sum() / np.logical_or(a == c, b == c).sum() for c in np.union1d(a, b)]
    return float(np.mean(ious))


@pytest.fixture(scope="module")
def calibration(client: JsonClient) -> str:
    rng = np.random.default_rng(41)
    for i in range(24):
        client.upload_dataset_file("qcal", "images", png_bytes(shapes.sample(rng, 128)[0]), f"c{i:02d}.png")
    return "qcal"


@pytest.fixture(scope="module")
def int8_version(client: JsonClient, calibration: str) -> dict[str, Any]:
    job = client.quantize("shapes-unet", 1, dataset=calibration, method="percentile", max_images=24)
    assert job["kind"] == "quantization"
    done = client.wait_job(job["id"], timeout=300)
    assert done["status"] == "completed", done.get("error")
    return dict(client.http.get(done["links"]["model"]).json())


def test_int8_version_on_triton_gives_the_fp32_mask(client: JsonClient, int8_version: dict[str, Any]) -> None:
    model = int8_version
    assert model["precision"] == "int8" and model["parent"] == "shapes-unet/1"
    q = model["quantization"]
    assert q["method"] == "percentile" and q["images"] == 24 and q["dataset"].endswith("/qcal/")
    assert set(q["reports"]) == {"step", "cross", "graph"}
    assert model["code_version"] and model["architecture"]["entrypoint"] == "maskline.models.starter.unet:UNet"
    assert model["metrics"]["size_ratio"] < 0.4  # int8 weights: under 40% of the float file
    rng = np.random.default_rng(43)
    for _ in range(3):
        image = png_bytes(shapes.sample(rng, 160)[0])
        fp32, fp32_job = mask_of(client, image, precision="fp32")
        int8, int8_job = mask_of(client, image, precision="int8")
        assert fp32_job["model"]["precision"] == "fp32" and int8_job["model"]["precision"] == "int8"
        assert int8_job["model"]["version"] == model["version"]
        assert mean_iou(fp32, int8) >= IOU_BOUND
    # A request naming no precision still gets the float version.
    _, default_job = mask_of(client, png_bytes(shapes.sample(rng, 128)[0]))
    assert default_job["model"]["precision"] == "fp32"


def test_step_cross_and_graph_reports(client: JsonClient, stack: Stack, int8_version: dict[str, Any]) -> None:
    name, version = int8_version["name"], int8_version["version"]
    step = client.report(name, version, "step")
    assert len(step["layers"]) == 18 and step["pixel_agreement"] > 0.99
    head = client.report(name, version, "step", layer="head")["layers"]
    assert [row["layer"] for row in head] == ["head"]
    assert {"sqnr_db", "cosine", "l2_normalized", "max_abs"} <= set(head[0]["error"])
    assert head[0]["output_scale"] > 0 and len(head[0]["weight_scale"]) == 4
    cross = client.report(name, version, "cross", layer="enc1.0")["layers"][0]
    assert cross["only_this_int8"]["sqnr_db"] > 20 and cross["all_but_this_int8_agreement"] > 0.99
    for kind in ("step", "cross"):
        table = cli(stack, "models", "report", f"{name}:{version}", "--kind", kind)
        assert table.returncode == 0 and table.stdout.splitlines()[0].startswith("layer"), table.stderr
        assert any(line.startswith("enc1.0 ") for line in table.stdout.splitlines())
    graph = client.graph(name, version)
    assert any(n["type"] == "ConvReLU2d" and n["dtype"] == "quint8" for n in graph["nodes"])
    # The platform's float v1 (tenant-a's own shapes-unet v1 is the int8 one): name the owner.
    float_graph = client.http.get("/v1/models/shapes-unet/1/graph", params={"owner": "maskline"}).json()
    assert sum(n["type"] == "Conv2d" for n in float_graph["nodes"]) == 15 and len(float_graph["edges"]) > 50
    with pytest.raises(ApiError) as err:
        client.report(name, version, "bogus")
    assert err.value.status == 404


def test_the_visualizer_draws_the_int8_graph_coloured_by_step_and_shows_a_layer(
    browser: WebDriver, stack: Stack, client: JsonClient, int8_version: dict[str, Any], console_owner: Account
) -> None:
    name, version = int8_version["name"], int8_version["version"]
    step = {row["layer"]: row for row in client.report(name, version, "step")["layers"]}
    graph = client.graph(name, version)
    b = browser
    sign_in(b, stack, console_owner, f"/visualizer?model={name}&version={version}")
    until(b, lambda: b.execute_script("return window.visualizer.ready"), 30, "the graph drawn")
    assert b.find_element(By.ID, "error").text == ""
    drawn = b.execute_script("return [window.visualizer.nodes, window.visualizer.coloured]")
    assert drawn[0] == sum(n["op"] != "get_attr" for n in graph["nodes"])  # constants folded into their layers
    assert drawn[1] == len(step)  # every int8 layer coloured by its STEP error
    # dagre placed the nodes: the input above the output, every node at its own position
    positions = b.execute_script("return window.visualizer.cy.nodes().map(n => [n.data('label'), n.position('y')])")
    ys = dict(positions)
    assert len({round(y) for _, y in positions}) > 5 and ys["input"] < ys["output"]
    b.execute_script("window.visualizer.select('enc2.0')")  # as a click on the layer does
    until(b, lambda: b.find_element(By.ID, "layer-name").text == "enc2.0", 10, "the layer's panel")
    step_table = b.find_element(By.ID, "step").text
    assert f"{step['enc2.0']['error']['sqnr_db']:.4g}"[:4] in step_table
    assert "only this layer int8" in b.find_element(By.ID, "cross").text

    # step one calibration image through float and int8: the layer's channels side by side
    b.find_element(By.ID, "fm-dataset").send_keys("qcal")
    b.find_element(By.ID, "fm-image").send_keys("c00.png")
    b.find_element(By.ID, "fm-run").click()
    until(
        b,
        lambda: b.execute_script("const i = document.getElementById('feature-maps'); return i && i.naturalWidth > 0"),
        60,
        "maps",
    )
    assert b.find_element(By.ID, "error").text == ""
    shown = b.execute_script("const i = document.getElementById('feature-maps'); return [i.naturalWidth, i.naturalHeight]")
    assert shown == [4 * (2 * 64 + 6 + 12), 4 * (64 + 12 + 6)]  # 16 channels of enc2.0's 64 x 64 maps, 4 pairs a row
    b.execute_script("document.getElementById('feature-maps').scrollIntoView()")
    assert violations(b) == []
    # the layer's weight and activation histograms, float and int8, drawn by uPlot
    assert len(b.find_elements(By.CSS_SELECTOR, "#histograms .uplot canvas")) == 4
    assert "weights, int8 integers" in b.find_element(By.ID, "histograms").text


def test_a_layer_edited_in_the_visualizer_makes_a_new_version(
    browser: WebDriver, stack: Stack, client: JsonClient, int8_version: dict[str, Any], console_owner: Account
) -> None:
    name, version = int8_version["name"], int8_version["version"]
    step = client.report(name, version, "step", layer="enc2.0")["layers"][0]
    b = browser
    sign_in(b, stack, console_owner, f"/visualizer?model={name}&version={version}")
    until(b, lambda: b.execute_script("return window.visualizer.ready"), 30, "the graph drawn")
    b.execute_script("window.visualizer.select('enc2.0')")
    until(b, lambda: b.find_elements(By.ID, "edit-output-scale"), 10, "the layer's edit form")
    scale = b.find_element(By.ID, "edit-output-scale")
    scale.clear()
    scale.send_keys(str(step["output_scale"] * 2))
    b.find_element(By.ID, "edit-run").click()
    until(b, lambda: b.find_elements(By.ID, "edited-version"), 180, "the edited version")
    made = int(b.find_element(By.ID, "edited-version").text.lstrip("v"))
    edited = client.get_model(name, made)
    assert edited["parent"] == f"{name}/{version}"
    assert edited["quantization"]["edits"][-1]["layer"] == "enc2.0"
    assert edited["quantization"]["edits"][-1]["output_scale"] == pytest.approx(step["output_scale"] * 2, rel=1e-6)
    assert b.find_element(By.ID, "error").text == ""
    assert violations(b) == []


def test_hybrid_with_calibrator_comparison(client: JsonClient, stack: Stack, calibration: str) -> None:
    job = client.quantize(
        "shapes-unet", 1, dataset=calibration, method="minmax", precision="hybrid", compare_calibrators=True, max_images=16
    )
    done = client.wait_job(job["id"], timeout=300)
    assert done["status"] == "completed", done.get("error")
    model = client.http.get(done["links"]["model"]).json()
    assert model["precision"] == "hybrid"
    comparison = client.report(model["name"], model["version"], "calibrators")
    assert [row["method"] for row in comparison["rows"]] == ["minmax", "entropy", "log2", "percentile"]
    assert all(0.5 < row["miou_vs_fp32"] <= 1.0 and row["size_bytes"] > 0 and row["latency_ms"] > 0 for row in comparison["rows"])
    table = cli(stack, "models", "report", f"{model['name']}:{model['version']}", "--kind", "calibrators")
    assert table.returncode == 0, table.stderr  # it crashed with KeyError 'layer'
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["method", "miou_vs_fp32", "pixel_agreement", "output_sqnr_db", "latency_ms", "size_bytes"]
    assert [line.split()[0] for line in lines[1:5]] == ["minmax", "entropy", "log2", "percentile"]
    assert float(lines[1].split()[1]) == pytest.approx(comparison["rows"][0]["miou_vs_fp32"], abs=1e-4)
    image = png_bytes(shapes.sample(np.random.default_rng(44), 128)[0])
    hybrid, job = mask_of(client, image, precision="hybrid")
    fp32, _ = mask_of(client, image, precision="fp32")
    assert job["model"]["precision"] == "hybrid" and mean_iou(fp32, hybrid) >= IOU_BOUND


def test_editing_a_layer_makes_a_new_version_and_reports_how_far_it_travels(
    client: JsonClient, stack: Stack, int8_version: dict[str, Any]
) -> None:
    name, version = int8_version["name"], int8_version["version"]
    step = client.report(name, version, "step", layer="enc2.0")["layers"][0]
    ends: list[dict[str, Any]] = []
    hook = Receiver(lambda headers, body: ends.append(json.loads(body)) or 200)
    client.http.put("/v1/webhooks", json={"url": None})  # a signing secret, for a request's own URL
    try:
        job = client.edit_layer(
            name, version, layer="enc2.0", output_scale=step["output_scale"] * 4, webhook_url=hook.url("/edit")
        )
        assert job["kind"] == "layer-edit"
        done = client.wait_job(job["id"], timeout=300)
        assert done["status"] == "completed", done.get("error")
        wait_until(lambda: ends, 60, "the edit's own webhook")
        assert [(e["job_id"], e["kind"], e["status"]) for e in ends] == [(job["id"], "layer-edit", "completed")]
    finally:
        client.http.delete("/v1/webhooks")
        hook.close()
    edited = client.http.get(done["links"]["model"]).json()
    assert edited["version"] > version and edited["parent"] == f"{name}/{version}"
    assert edited["quantization"]["edits"][0]["layer"] == "enc2.0"
    travel = client.report(name, edited["version"], "travel")
    rows = {row["layer"]: row for row in travel["layers"]}
    assert rows["enc1.0"]["sqnr_db_after"] == rows["enc1.0"]["sqnr_db_before"]  # upstream: untouched
    assert rows["enc2.0"]["sqnr_db_after"] < rows["enc2.0"]["sqnr_db_before"]  # the coarser grid costs precision
    assert travel["output_sqnr_db_after"] < travel["output_sqnr_db_before"]
    table = cli(stack, "models", "report", f"{name}:{edited['version']}", "--kind", "travel")
    assert table.returncode == 0, table.stderr  # it printed {} for every layer
    printed = {line.split()[0]: line.split()[1:] for line in table.stdout.splitlines()[1 : len(rows) + 1]}
    assert set(printed) == set(rows)
    assert float(printed["enc2.0"][0]) == pytest.approx(rows["enc2.0"]["sqnr_db_before"], abs=0.1)
    assert float(printed["enc2.0"][2]) < 0  # the change, in dB
    assert "edited: enc2.0" in table.stdout
    # The edited version is servable.
    _, job = mask_of(client, png_bytes(shapes.sample(np.random.default_rng(45), 128)[0]), version=edited["version"])
    assert job["model"]["version"] == edited["version"] and job["model"]["precision"] == "int8"
    bad = client.edit_layer(name, version, layer="enc2.0", weights=[1, 2, 3])
    failed = client.wait_job(bad["id"], timeout=120)
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_edit"
    assert "3 weights given" in failed["error"]["reason"]


def versions_of(client: JsonClient, name: str) -> list[int]:
    return [m["version"] for m in client.models() if m["name"] == name]


def test_bad_requests_end_in_failed_jobs_and_leave_no_version(client: JsonClient, stack: Stack, calibration: str) -> None:
    before = versions_of(client, "shapes-unet")
    client.upload_dataset_file("qempty", "masks", png_bytes(np.zeros((8, 8), np.uint8)), "m.png")
    empty = client.wait_job(client.quantize("shapes-unet", 1, dataset="qempty")["id"], timeout=120)
    assert empty["status"] == "failed" and empty["error"]["code"] == "empty_calibration_set"
    # A GELU variant of the architecture: the same weights fit, but GELU has no int8 kernel here.
    gelu = client.register_model(
        WEIGHTS,
        name="unet-gelu",
        labels=list(shapes.LABELS),
        input_size=(128, 128),
        architecture="maskline.models.starter.unet:UNet",
        architecture_kwargs={"activation": "gelu"},
    )
    unsupported = client.wait_job(client.quantize("unet-gelu", gelu["version"], dataset="qcal")["id"], timeout=120)
    assert unsupported["status"] == "failed" and unsupported["error"]["code"] == "unsupported_layer"
    assert "'enc1.2' (GELU)" in unsupported["error"]["reason"]
    # Without its architecture a TorchScript model is exported to ONNX and quantized there (QDQ).
    no_arch = client.register_model(WEIGHTS, name="unet-plain", labels=list(shapes.LABELS), input_size=(128, 128))
    plain = client.wait_job(client.quantize("unet-plain", no_arch["version"], dataset="qcal")["id"], timeout=300)
    assert plain["status"] == "completed", plain.get("error")
    exported = dict(client.http.get(plain["links"]["model"]).json())
    assert (exported["format"], exported["precision"]) == ("onnx", "int8")
    image = png_bytes(shapes.sample(np.random.default_rng(5), 128)[0])
    fp32_mask, _ = mask_of(client, image, model="unet-plain", version=no_arch["version"])
    int8_mask, _ = mask_of(client, image, model="unet-plain", version=exported["version"])
    assert mean_iou(fp32_mask, int8_mask) >= IOU_BOUND
    with pytest.raises(ApiError) as err:  # the gateway checks what it can before starting a job
        client.quantize("no-such-model", 1, dataset="qcal")
    assert err.value.status == 404
    # A client publishing straight onto the bus gets a failed job with the reason.
    job_id = asyncio.run(publish_quantize(stack, VersionRef("no-such-model", 3)))
    failed = wait_until_known(client, job_id)
    assert failed["status"] == "failed" and failed["error"]["code"] == "model_not_found"
    assert versions_of(client, "shapes-unet") == before
    assert versions_of(client, "unet-gelu") == [gelu["version"]]


def wait_until_known(client: JsonClient, job_id: str) -> dict[str, Any]:
    """A job published on the bus is known to the gateway once audit projected its event."""
    for _ in range(100):
        try:
            return client.wait_job(job_id, timeout=60)
        except ApiError as exc:
            if exc.status != 404:
                raise
            time.sleep(0.1)
    raise AssertionError(f"job {job_id} never appeared")


async def publish_quantize(stack: Stack, model: VersionRef) -> str:
    """As an outside system bound to tenant-a: its own credential, its tenant's subject."""
    bus = await connect(stack.client_settings("partner-a"), "test", identity="partner-a")
    job_id = uuid.uuid4().hex
    request = model_v1.QuantizeRequested(model=model, dataset="datasets/tenant-a/qcal/")
    env = Envelope(
        id=f"{job_id}:{model_v1.QUANTIZE_REQUESTED}",
        type=model_v1.QUANTIZE_REQUESTED,
        time=now(),
        source="test",
        tenant="tenant-a",
        job_id=job_id,
        trace_id=new_trace_id(),
        data=request,
    )
    await bus.publish(env)
    await bus.close()
    return job_id
