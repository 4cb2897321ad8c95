"""The models page in a real browser (headless Chromium): register a model with its weights' upload
progress, quantize a version and read its STEP and CROSS tables, roll an alias back and read its
audited trail; a member who tries the rollback sees the server's refusal. Each page is checked with
axe-core (no serious or critical violations) and its screenshot kept."""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import WEIGHTS, shapes
from tests.e2e.accessibility import violations
from tests.e2e.conftest import Account, audited_trail, person, sign_in, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
LABELS = list(shapes.LABELS)
ARCHITECTURE = "maskline.models.starter.unet:UNet"
#: Calibration images of the quantization test: few, so that the job stays short.
CALIBRATION_IMAGES = 4


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def png_bytes(array: NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def register(client: JsonClient, name: str) -> int:
    """The starter's weights as a new version of `name` (as tests/e2e/test_rollout.py registers them)."""
    return int(client.register_model(WEIGHTS, name=name, labels=LABELS, input_size=(128, 128))["version"])


def text(b: WebDriver, element_id: str) -> str:
    return str(b.find_element(By.ID, element_id).text)


def ready(b: WebDriver) -> bool:
    """The page drew its first state: models, datasets, access, and the chosen version."""
    return b.find_element(By.TAG_NAME, "main").get_attribute("data-ready") == "true"


def table(b: WebDriver, element_id: str) -> list[list[str]]:
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in b.find_elements(By.CSS_SELECTOR, f"#{element_id} tbody tr")
    ]


def alias_version(b: WebDriver, alias: str) -> str | None:
    """The version column of the alias's row in the page's aliases table."""
    return next((row[1] for row in table(b, "aliases") if row and row[0] == alias), None)


def open_models_page(b: WebDriver, stack: Stack, account: Account, name: str | None = None) -> None:
    sign_in(b, stack, account, f"/models?model={name}" if name else "/models")
    until(b, lambda: ready(b), 60, "the models page loaded")
    assert text(b, "error") == ""


def test_register_a_model_from_the_page_with_the_upload_progress(
    browser: WebDriver, stack: Stack, console_owner: Account, client: JsonClient, tmp_path: Path
) -> None:
    name = unique("cm-reg")
    weights = tmp_path / "my-segmenter.pt"
    shutil.copyfile(WEIGHTS, weights)  # a valid TorchScript segmenter (the starter's): about 2 MB, so the upload has progress
    b = browser
    open_models_page(b, stack, console_owner)
    b.find_element(By.ID, "reg-name").send_keys(name)
    b.find_element(By.ID, "reg-labels").send_keys(", ".join(LABELS))
    Select(b.find_element(By.ID, "reg-format")).select_by_value("torchscript")
    b.find_element(By.ID, "reg-weights").send_keys(str(weights))
    b.find_element(By.ID, "reg-submit").click()
    until(b, lambda: text(b, "reg-status") == f"registered {name} v1", 120, "the registration")
    assert b.execute_script("return document.getElementById('upload-progress').value") == 100
    assert text(b, "upload-status").startswith("100% of "), text(b, "upload-status")
    until(b, lambda: any(row[:2] == [f"tenant-a/{name}", "1"] for row in table(b, "models")), 20, "the new version listed")
    assert Select(b.find_element(By.ID, "model")).first_selected_option.text == f"tenant-a/{name}"

    registered = [m for m in client.models() if m["name"] == name and m["owner"] == "tenant-a"]
    assert [(m["version"], m["precision"], m["format"]) for m in registered] == [(1, "fp32", "torchscript")]
    assert list(registered[0]["labels"]) == LABELS and list(registered[0]["input_size"]) == [128, 128]
    assert violations(b) == []


def test_quantize_from_the_page_and_read_the_step_and_cross_tables(
    browser: WebDriver, stack: Stack, console_owner: Account, client: JsonClient
) -> None:
    name, dataset = unique("cm-quant"), unique("cm-qcal")
    rng = np.random.default_rng(17)
    for i in range(CALIBRATION_IMAGES):
        client.upload_dataset_file(dataset, "images", png_bytes(shapes.sample(rng, 128)[0]), f"c{i}.png")
    client.register_model(
        WEIGHTS,
        name=name,
        labels=LABELS,
        input_size=(128, 128),
        architecture=ARCHITECTURE,
        architecture_kwargs={"classes": len(LABELS), "width": 16},
    )
    b = browser
    open_models_page(b, stack, console_owner, name)
    assert Select(b.find_element(By.ID, "model")).first_selected_option.text == f"tenant-a/{name}"
    Select(b.find_element(By.ID, "q-method")).select_by_value("minmax")
    Select(b.find_element(By.ID, "q-precision")).select_by_value("int8")
    b.find_element(By.ID, "q-dataset").send_keys(dataset)
    b.find_element(By.ID, "q-max-images").clear()
    b.find_element(By.ID, "q-max-images").send_keys(str(CALIBRATION_IMAGES))
    b.find_element(By.ID, "q-submit").click()
    until(b, lambda: text(b, "q-status").startswith("completed:"), 240, "the quantization's end, through its event stream")
    assert text(b, "error") == ""

    made = [m for m in client.models() if m["name"] == name and m["precision"] == "int8"]
    assert len(made) == 1, made
    version = made[0]["version"]
    quantization: dict[str, Any] = made[0]["quantization"]
    assert quantization["method"] == "minmax" and quantization["images"] == CALIBRATION_IMAGES
    assert text(b, "q-status") == f"completed: {name} v{version} (int8)"
    step = client.report(name, version, "step")["layers"]
    until(b, lambda: len(table(b, "step")) == len(step), 30, "the STEP table, a row per int8 layer")
    assert [row[0] for row in table(b, "step")] == [layer["layer"] for layer in step]
    assert "cross" in quantization["reports"]
    cross = client.report(name, version, "cross")["layers"]
    until(b, lambda: len(table(b, "cross")) == len(cross) > 0, 30, "the CROSS table")
    assert int(b.find_element(By.ID, "q-progress").get_attribute("value") or 0) > 0
    link = b.find_element(By.ID, "visualizer-link").get_attribute("href") or ""
    assert link.endswith(f"/visualizer?model={name}&version={version}"), link
    assert violations(b) == []


def aliased(client: JsonClient) -> tuple[str, int, int]:
    """A model with versions 1 and 2 whose `stable` was promoted from 1 to 2 (the trail has the promotion)."""
    name = unique("cm-alias")
    first, second = register(client, name), register(client, name)
    client.promote(name, "stable", second)

    def promoted(trail: list[dict[str, Any]]) -> bool:
        return any(r["type"] == "model.v1.alias.changed" and r["event"]["data"]["action"] == "promoted" for r in trail)

    audited_trail(client, f"/v1/models/{name}/aliases/stable/trail", promoted, timeout=30)
    return name, first, second


def test_roll_back_an_alias_from_the_page_and_read_its_trail(
    browser: WebDriver, stack: Stack, console_owner: Account, client: JsonClient
) -> None:
    name, first, second = aliased(client)
    b = browser
    open_models_page(b, stack, console_owner, name)
    until(b, lambda: alias_version(b, "stable") == str(second), 30, f"stable at v{second}")
    b.find_element(By.XPATH, "//button[text()='Roll back stable']").click()
    until(b, lambda: alias_version(b, "stable") == str(first), 30, f"stable back at v{first}")
    assert text(b, "alias-status") == f"stable rolled back to v{first}"
    until(b, lambda: any(row[1:2] == ["rolled-back"] for row in table(b, "trail")), 40, "the rollback in the audited trail")
    newest = table(b, "trail")[0]
    # the person who did it, not only their tenant, is on the record and the trail
    assert newest[1:5] == ["rolled-back", str(first), str(second), console_owner.id], newest
    assert any(row[1] == "promoted" for row in table(b, "trail"))
    assert client.alias(name, "stable")["alias"]["version"] == first
    # a canary share of stable's requests for the newer version, from the rollout form
    Select(b.find_element(By.ID, "rollout-canary")).select_by_value(str(second))
    share = b.find_element(By.ID, "rollout-percent")
    share.clear()
    share.send_keys("25")
    b.find_element(By.ID, "rollout-submit").click()
    until(b, lambda: client.alias(name, "stable")["alias"].get("canary") == second, 30, "the canary set")
    assert client.alias(name, "stable")["alias"]["canary_percent"] == 25.0
    until(b, lambda: any(row[1] == "rollout" for row in table(b, "trail")), 40, "the rollout in the audited trail")
    assert violations(b) == []


def test_a_member_who_rolls_back_sees_the_servers_refusal(browser: WebDriver, stack: Stack, client: JsonClient) -> None:
    # tenant-a's owners have not let members change aliases (the default, said again here)
    client.http.put("/v1/users/policy", json={}).raise_for_status()
    name, _, second = aliased(client)
    member = person("key-a", stack, "member")
    b = browser
    open_models_page(b, stack, member, name)
    until(b, lambda: alias_version(b, "stable") == str(second), 30, f"stable at v{second}")
    button = b.find_element(By.XPATH, "//button[text()='Roll back stable']")
    assert button.is_enabled()  # the page lets a member try: the tenant's policy is the server's to apply
    button.click()
    until(b, lambda: "role_forbidden" in text(b, "error"), 20, "the server's refusal")
    assert "needs the owner role" in text(b, "error"), text(b, "error")
    assert alias_version(b, "stable") == str(second)
    assert client.alias(name, "stable")["alias"]["version"] == second
    assert violations(b) == []
