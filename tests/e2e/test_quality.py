"""Quality over time through the running stack: an evaluation records a version's reference, the
shapes it knows leave it unflagged, real photos raise its drift flag; the hourly summary, the
overview and audit's per-version metrics say the same, and another tenant sees none of it."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models import person
from maskline.models.starter import WEIGHTS, shapes
from maskline.shared.images.codec import encode_png
from tests.e2e.accessibility import violations
from tests.e2e.conftest import Account, audited_trail, cli, sign_in, until
from tests.e2e.test_metrics import parse
from tests.e2e.test_segmentation import png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
MODEL = "quality-shapes"  # this test's own: no other test's jobs reach its summaries
REFERENCE_IMAGES = 40
LIVE_JOBS = 30


def photo_views(count: int) -> list[bytes]:
    """Crops and flips of the bundled photo, at two scales: real photos, which the shapes model never saw."""
    image = np.asarray(Image.open(io.BytesIO((person.FOLDER / "samples" / "astronaut.jpg").read_bytes())).convert("RGB"))
    views = []
    for i in range(count):
        y, x, step = (i * 17) % 200, (i * 29) % 200, 1 + i % 2
        view = image[y : y + 300, x : x + 300][::step, ::step]
        views.append(encode_png(np.ascontiguousarray(view[:, ::-1] if i % 3 == 0 else view)))
    return views


def quality_of(client: JsonClient, **query: Any) -> dict[str, Any]:
    return dict(client.http.get(f"/v1/models/{MODEL}/1/quality", params=query).raise_for_status().json())


def counted(client: JsonClient, jobs: int, timeout: float = 60.0) -> dict[str, Any]:
    """The version's quality once audit has folded `jobs` jobs into it (a window of two hours: the
    test may run across the turn of an hour)."""
    deadline = time.monotonic() + timeout
    while True:
        found = quality_of(client, window=2)
        if sum(h["jobs"] for h in found["hours"]) >= jobs or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture(scope="module")
def evaluated(client: JsonClient) -> dict[str, Any]:
    client.register_model(WEIGHTS, name=MODEL, labels=list(shapes.LABELS), input_size=(128, 128))
    rng = np.random.default_rng(3031)
    for i in range(REFERENCE_IMAGES):
        image, mask = shapes.sample(rng, 128)
        client.upload_dataset_file("quality-reference", "images", png_bytes(image), f"r{i}.png")
        client.upload_dataset_file("quality-reference", "masks", png_bytes(mask), f"r{i}.png")
    done = client.wait_job(client.evaluate(MODEL, 1, dataset="quality-reference")["id"], timeout=300)
    assert done["status"] == "completed", done.get("error")
    return dict(client.evaluations(MODEL, 1)[0])


def test_shapes_keep_the_version_unflagged_and_photos_raise_its_drift_flag(
    stack: Stack, client: JsonClient, other_tenant: JsonClient, evaluated: dict[str, Any]
) -> None:
    reference = evaluated["reference"]
    assert reference["images"] == REFERENCE_IMAGES
    assert {f: sum(c) for f, c in reference["histograms"].items()} == dict.fromkeys(reference["histograms"], REFERENCE_IMAGES)
    before = quality_of(client)
    assert before["hours"] == [] and before["drift"]["jobs"] == 0 and before["drift"]["flagged"] is False

    rng = np.random.default_rng(77)
    for _ in range(LIVE_JOBS):
        client.submit(png_bytes(shapes.sample(rng, 128)[0]), wait=60, model=MODEL)
    in_domain = counted(client, LIVE_JOBS)["drift"]
    assert in_domain["jobs"] == LIVE_JOBS and in_domain["flagged"] is False, in_domain
    assert in_domain["out_of_domain_rate"] < 0.1

    for photo in photo_views(LIVE_JOBS):
        client.submit(photo, wait=60, model=MODEL)
    after = counted(client, 2 * LIVE_JOBS)
    drift = after["drift"]
    assert drift["flagged"] is True and drift["jobs"] == 2 * LIVE_JOBS, drift
    assert "uncertain_fraction" in drift["features"] and drift["psi"]["uncertain_fraction"] > drift["threshold"]
    assert drift["out_of_domain_rate"] >= 0.3  # most of the photos (a few crops are mostly plain background)
    hours = after["hours"]
    assert sum(h["jobs"] for h in hours) == 2 * LIVE_JOBS and sum(h["failed"] for h in hours) == 0
    assert all(h["mean_probability"] and h["brightness"] and h["latency_ms_mean"] for h in hours)

    overview = {(r["owner"], r["name"], r["version"]): r for r in client.http.get("/v1/quality").raise_for_status().json()}
    row = overview[("tenant-a", MODEL, 1)]
    assert row["jobs_24h"] == 2 * LIVE_JOBS and row["drift"]["flagged"] is True

    # audit's per-version series: the model's name and version, never the tenant
    audit = next(port for label, port in stack.probe_ports().items() if label.startswith("audit"))
    found = parse(httpx.get(f"http://127.0.0.1:{audit}/metrics", timeout=10).text)
    assert row["metrics_label"] == after["metrics_label"] and row["metrics_label"].startswith("t-")
    ours = [(labels, value) for labels, value in found["maskline_model_jobs_total"] if labels["model"] == row["metrics_label"]]
    assert sum(value for labels, value in ours if labels["outcome"] == "completed") == 2 * LIVE_JOBS
    assert all(set(labels) == {"model", "version", "alias", "outcome"} for labels, _ in found["maskline_model_jobs_total"])
    assert not [labels for labels, _ in found["maskline_model_jobs_total"] if "tenant-" in labels["model"]]

    # another tenant: not its model, not its summaries
    refused = other_tenant.http.get(f"/v1/models/{MODEL}/1/quality", params={"owner": "tenant-a"})
    assert refused.status_code == 404 and refused.json()["code"] == "model_not_found"
    assert ("tenant-a", MODEL, 1) not in {
        (r["owner"], r["name"], r["version"]) for r in other_tenant.http.get("/v1/quality").json()
    }


def test_a_guarded_alias_rolls_itself_back_once_when_its_version_drifts(
    stack: Stack, client: JsonClient, evaluated: dict[str, Any]
) -> None:
    second = client.register_model(WEIGHTS, name=MODEL, labels=list(shapes.LABELS), input_size=(128, 128))
    assert second["version"] == 2
    client.promote(MODEL, "stable", 2)
    guarded = cli(stack, "alias", "guard", MODEL, "stable", "--on-drift", "--cooldown", "60", "--json")
    assert guarded.returncode == 0, guarded.stderr
    assert json.loads(guarded.stdout)["alias"]["guard"]["on_drift"] is True
    done = client.wait_job(client.evaluate(MODEL, 2, dataset="quality-reference")["id"], timeout=300)
    assert done["status"] == "completed", done.get("error")

    for photo in photo_views(LIVE_JOBS):  # through the alias: version 2 serves them
        job = client.submit(photo, wait=60, model=MODEL)
        assert job["model"]["version"] == 2 and job["model"]["alias"] == "stable"

    deadline = time.monotonic() + 120  # the guard's cooldown (60 s from setting it), then its next check
    while (alias := client.alias(MODEL, "stable")["alias"])["version"] != 1:
        assert time.monotonic() < deadline, alias
        time.sleep(1.0)
    assert alias["by"] == "guard" and alias["history"] == [] and "v2 drifted" in alias["guard_tripped"]

    def actions(trail: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(r["event"]["data"]["action"], r["event"]["source"]) for r in trail if r["type"] == "model.v1.alias.changed"]

    trail = audited_trail(
        client, f"/v1/models/{MODEL}/aliases/stable/trail", lambda t: actions(t)[-1:] == [("rolled-back", "weights")]
    )
    assert actions(trail)[-3:] == [("promoted", "gateway"), ("rollout", "gateway"), ("rolled-back", "weights")]
    assert trail[-1]["event"]["data"]["rule"].startswith("automatic rollback: v2 drifted from its evaluation reference")
    time.sleep(7)  # two more checks: a tripped guard does not act again
    assert client.alias(MODEL, "stable")["alias"]["version"] == 1


def test_the_quality_page_shows_trends_drift_flags_and_loaded_models(
    browser: WebDriver, stack: Stack, evaluated: dict[str, Any], console_owner: Account
) -> None:
    b = browser
    sign_in(b, stack, console_owner, f"/quality?model={MODEL}&version=1&owner=tenant-a")
    row = f'#versions tr[data-model="tenant-a/{MODEL}/1"]'
    until(b, lambda: "drifting" in b.find_element(By.CSS_SELECTOR, row).text, 30, "version 1 flagged as drifting")
    assert "selected" in str(b.find_element(By.CSS_SELECTOR, row).get_attribute("class"))
    until(b, lambda: len(b.find_elements(By.CSS_SELECTOR, "#drift tbody tr")) == 4, 20, "the four features' PSI")
    features = {r.find_elements(By.TAG_NAME, "td")[0].text: r.text for r in b.find_elements(By.CSS_SELECTOR, "#drift tbody tr")}
    assert "over" in features["uncertain_fraction"]
    assert len(b.find_elements(By.CSS_SELECTOR, ".charts canvas")) == 3  # jobs, confidence, latency, drawn by uPlot
    assert "jobs in the last 24 h against 40 evaluation images" in b.find_element(By.ID, "drift-note").text
    # tenant-a is an operator: it sees which versions Triton holds
    until(b, lambda: f"tenant-a.{MODEL}" in b.find_element(By.ID, "loaded").text, 20, "the version loaded in Triton")
    assert "budget none" in b.find_element(By.ID, "budget").text
    assert b.find_element(By.ID, "error").text == ""
    assert violations(b) == []
