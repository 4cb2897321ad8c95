"""The console's data pages in a real browser (headless Chromium): upload a dataset with its masks,
browse it and expand it with the five variants; delete a file from the file manager; follow a
segmentation on the jobs page and replay it; start and stop a federated run; a viewer sees the
datasets page with its changes disabled, and the server refuses them too. Each page is checked with
axe-core (no serious or critical violations) and its screenshot kept."""

from __future__ import annotations

import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models import starter
from tests.e2e.accessibility import violations
from tests.e2e.conftest import Account, person, sign_in, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
VARIANTS = {"original", "rotate", "blur", "flip", "flop"}


def text(b: WebDriver, element_id: str) -> str:
    return str(b.find_element(By.ID, element_id).text)


def loaded(b: WebDriver, selector: str) -> int:
    """How many of the pictures `selector` finds have arrived (decoded, with a width)."""
    script = "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete && i.naturalWidth > 0).length"
    return int(b.execute_script(script, selector))


def attribute(b: WebDriver, selector: str, name: str) -> str | None:
    found = b.find_elements(By.CSS_SELECTOR, selector)
    value = found[0].get_attribute(name) if found else None
    return None if value is None else str(value)


def click_and_confirm(b: WebDriver, selector: str) -> None:
    """Click a button that asks `confirm()` first, and say yes. The click is queued in the page, so
    that the dialog opens after this command has answered (a dialog does not block it)."""
    b.execute_script("const button = document.querySelector(arguments[0]); setTimeout(() => button.click(), 0)", selector)
    WebDriverWait(b, 10).until(expected_conditions.alert_is_present(), message="the confirmation never opened")
    b.switch_to.alert.accept()


def test_the_datasets_page_uploads_images_with_their_masks_browses_them_and_expands_them(
    browser: WebDriver, stack: Stack, console_owner: Account, client: JsonClient
) -> None:
    b = browser
    name = f"console-{uuid.uuid4().hex[:8]}"
    sign_in(b, stack, console_owner, "/datasets")
    b.find_element(By.ID, "name").send_keys(name)
    b.find_element(By.ID, "images").send_keys("\n".join(str(starter.SAMPLES / f"shapes-{i}.png") for i in (1, 2)))
    b.find_element(By.ID, "masks").send_keys("\n".join(str(starter.SAMPLES / f"shapes-{i}.mask.png") for i in (1, 2)))
    b.find_element(By.ID, "upload").click()
    until(b, lambda: f"Uploaded 4 of 4 files to {name}" in text(b, "upload-status"), 60, "the four files uploaded")
    # Each mask went up under its image's name (shapes-1.mask.png is the mask of shapes-1.png).
    view = client.dataset(name)
    assert sorted(view["images"]) == ["images/shapes-1.png", "images/shapes-2.png"], view
    assert sorted(view["masks"]) == ["masks/shapes-1.png", "masks/shapes-2.png"], view

    grid = f'#grid[data-dataset="{name}"]'
    until(
        b,
        lambda: loaded(b, f"{grid} img.image") == 2 and loaded(b, f"{grid} img.mask") == 2,
        30,
        "the two images and their masks in the browse grid",
    )
    shown = {f.get_attribute("data-image") for f in b.find_elements(By.CSS_SELECTOR, f"{grid} figure")}
    assert shown == {"shapes-1.png", "shapes-2.png"}
    until(b, lambda: b.find_elements(By.CSS_SELECTOR, f'#datasets tr[data-dataset="{name}"]'), 20, "the dataset listed")
    assert Select(b.find_element(By.ID, "dataset")).first_selected_option.get_attribute("value") == name

    b.find_element(By.ID, "expand").click()
    until(b, lambda: text(b, "expand-status").startswith("completed"), 120, "the expansion completed (its event stream)")
    assert "2 of 2 images" in text(b, "expand-status")
    expanded = f'#grid[data-dataset="{name}-aug"]'
    until(b, lambda: len(b.find_elements(By.CSS_SELECTOR, f"{expanded} figure[data-variant]")) == 10, 30, "the variants")
    figures = b.find_elements(By.CSS_SELECTOR, f"{expanded} figure[data-variant]")
    assert {f.get_attribute("data-variant") for f in figures} == VARIANTS
    until(
        b,
        lambda: loaded(b, f"{expanded} img.image") == 10 and loaded(b, f"{expanded} img.mask") == 10,
        30,
        "every variant's image and mask",
    )
    assert len(client.dataset_manifest(f"{name}-aug")["entries"]) == 10
    assert violations(b) == []


def test_the_files_page_lists_a_dataset_s_files_and_deletes_one(
    browser: WebDriver, stack: Stack, console_owner: Account, client: JsonClient
) -> None:
    b = browser
    name = f"console-files-{uuid.uuid4().hex[:8]}"
    for i in (1, 2):
        client.upload_dataset_file(name, "images", (starter.SAMPLES / f"shapes-{i}.png").read_bytes(), f"shapes-{i}.png")
    sign_in(b, stack, console_owner, f"/files?area=datasets&path={name}/")
    first, second = (f'#files tr[data-path="{name}/images/shapes-{i}.png"]' for i in (1, 2))
    until(b, lambda: b.find_elements(By.CSS_SELECTOR, first) and b.find_elements(By.CSS_SELECTOR, second), 30, "the files")
    assert len(b.find_elements(By.CSS_SELECTOR, "#files tbody tr")) == 2  # the path filter leaves the dataset's own
    link = b.find_element(By.CSS_SELECTOR, f"{first} a")
    assert str(link.get_attribute("href")).endswith(f"/v1/files/datasets/{name}/images/shapes-1.png")

    click_and_confirm(b, f"{first} button.delete")
    until(b, lambda: f"Deleted datasets/{name}/images/shapes-1.png" in text(b, "done"), 20, "the deletion")
    assert not b.find_elements(By.CSS_SELECTOR, first) and b.find_elements(By.CSS_SELECTOR, second)
    left = {f["path"] for f in client.files("datasets")["files"]}
    assert f"{name}/images/shapes-1.png" not in left and f"{name}/images/shapes-2.png" in left
    assert violations(b) == []


def test_the_jobs_page_lists_a_segmentation_shows_its_outputs_and_replays_it(
    browser: WebDriver, stack: Stack, console_owner: Account, client: JsonClient
) -> None:
    b = browser
    job = client.submit((starter.SAMPLES / "shapes-1.png").read_bytes(), wait=60)
    assert job["status"] == "completed", job
    sign_in(b, stack, console_owner, "/jobs")
    row = f'#jobs tr[data-job="{job["id"]}"]'
    until(b, lambda: attribute(b, row, "data-status") == "completed", 30, "the segmentation listed as completed")
    assert "segmentation" in b.find_element(By.CSS_SELECTOR, row).text

    b.execute_script("document.querySelector(arguments[0]).click()", f"{row} button.outputs")
    until(
        b,
        lambda: (
            {"mask", "overlay", "regions"}
            <= {a.get_attribute("data-artifact") for a in b.find_elements(By.CSS_SELECTOR, "#outputs-links a")}
        ),
        20,
        "links to the outputs",
    )
    until(b, lambda: loaded(b, "#outputs-images img") == 2, 20, "the mask and the overlay")

    b.execute_script("document.querySelector(arguments[0]).click()", f"{row} button.replay")
    until(
        b,
        lambda: attribute(b, "#replay", "data-reproduced") in ("true", "false") or "did not run" in text(b, "replay-verdict"),
        120,
        "the replay's verdict (its event stream)",
    )
    verdict = text(b, "replay-verdict")
    assert attribute(b, "#replay", "data-reproduced") == "true", verdict
    assert "every output matches" in verdict
    matched = {r.get_attribute("data-output"): r.text for r in b.find_elements(By.CSS_SELECTOR, "#replay-outputs tbody tr")}
    assert set(matched) == {"mask", "overlay", "regions"} and all(line.endswith("yes") for line in matched.values()), matched
    replay = str(attribute(b, "#replay", "data-replay"))
    assert client.status(replay)["status"] == "completed"
    until(b, lambda: attribute(b, f'#jobs tr[data-job="{replay}"]', "data-status") == "completed", 20, "the replay listed")
    assert violations(b) == []


def test_the_federations_page_starts_a_run_shows_its_round_and_stops_it(
    browser: WebDriver, stack: Stack, console_owner: Account, client: JsonClient
) -> None:
    b = browser
    name = f"console-fed-{uuid.uuid4().hex[:8]}"
    sign_in(b, stack, console_owner, "/federations")
    until(b, lambda: b.find_elements(By.CSS_SELECTOR, '#fed-model option[value="maskline/shapes-unet/1"]'), 30, "the models")
    Select(b.find_element(By.ID, "fed-model")).select_by_value("maskline/shapes-unet/1")
    b.find_element(By.ID, "fed-name").send_keys(name)
    b.find_element(By.ID, "fed-sites").send_keys("tenant-b, site-x")
    rounds = b.find_element(By.ID, "fed-rounds")
    rounds.clear()
    rounds.send_keys("2")
    b.find_element(By.ID, "start-run").click()
    until(b, lambda: attribute(b, "#start-status", "data-federation"), 30, "the run started")
    federation = str(attribute(b, "#start-status", "data-federation"))
    view = client.federation(federation)
    assert (view["name"], view["sites"], view["rounds"], view["quorum"], view["status"]) == (
        name,
        ["tenant-b", "site-x"],
        2,
        2,
        "running",
    )

    row = f'#federations tr[data-federation="{federation}"]'
    until(b, lambda: attribute(b, row, "data-state") == "open", 30, "the run listed, its round open")
    b.execute_script("document.querySelector(arguments[0]).click()", f"{row} button.rounds")
    until(b, lambda: attribute(b, "#run", "data-federation") == federation, 20, "the run's rounds")
    until(b, lambda: b.find_elements(By.CSS_SELECTOR, '#rounds tr[data-round="1"]'), 20, "round 1")
    assert "tenant-b" in b.find_element(By.CSS_SELECTOR, '#rounds tr[data-round="1"]').text  # missing so far

    click_and_confirm(b, f"{row} button.stop")
    until(b, lambda: attribute(b, row, "data-state") == "stopped", 30, "the run stopped")
    until(b, lambda: client.federation(federation)["status"] == "stopped", 30, "the run stopped, as the API tells it")
    until(b, lambda: attribute(b, "#run", "data-status") == "stopped", 20, "the run's panel saying so")
    assert violations(b) == []


def test_a_viewer_sees_datasets_but_cannot_upload_or_expand_and_the_server_refuses_it_too(
    browser: WebDriver, stack: Stack
) -> None:
    b = browser
    viewer = person("key-a", stack, "viewer")
    sign_in(b, stack, viewer, "/datasets")
    until(b, lambda: "viewer" in text(b, "note"), 20, "the page saying a viewer may not change datasets")
    assert not b.find_element(By.ID, "upload").is_enabled()
    assert not b.find_element(By.ID, "expand").is_enabled()
    # The page's own request, past its disabled button: the server decides.
    answer = b.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "maskline.api('/v1/datasets/viewer-try/images/a.png', {method: 'PUT', body: new Uint8Array(8)})"
        ".then(() => done('accepted'), e => done(e.code));"
    )
    assert answer == "role_forbidden"
    assert violations(b) == []
