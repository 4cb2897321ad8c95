"""The operator dashboard in a real headless Chromium (Debian's chromium + chromedriver, via Selenium):
it sees a service go down and come back, and re-drives a dead letter whose cause was fixed."""

from __future__ import annotations

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import WEIGHTS, shapes
from tests.e2e.accessibility import violations
from tests.e2e.conftest import Account, sign_in, until
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e


def service_state(b: WebDriver, name: str) -> str:
    return str(b.find_element(By.CSS_SELECTOR, f'#services tr[data-service="{name}"] td.state').text)


def dlq_rows(b: WebDriver) -> list[str]:
    return [str(row.text) for row in b.find_elements(By.CSS_SELECTOR, "#dlq tbody tr")]


def test_dashboard_shows_a_service_going_down_and_back_and_redrives_a_dead_letter(
    browser: WebDriver, stack: Stack, client: JsonClient, console_owner: Account
) -> None:
    b = browser
    sign_in(b, stack, console_owner, "/dashboard")
    until(b, lambda: service_state(b, "augment") == "up" and service_state(b, "infer") == "up", 30, "augment and infer up")
    stack.stop_service("augment")  # stopped for good (a crash would be restarted by the supervisor)
    until(b, lambda: service_state(b, "augment") == "down", 20, "augment down after it stopped")
    stack.start_service("augment")
    until(b, lambda: service_state(b, "augment") == "up", 60, "augment up again")

    # A job for a model nobody registered yet: infer gives up on it, it lands in the dead-letter queue.
    image = png_bytes(shapes.sample(np.random.default_rng(12), 96)[0])
    with pytest.raises(ApiError) as err:
        client.submit(image, wait=60, model="late-model")
    job_id = err.value.problem["detail"].split()[1]
    short = job_id[:12]
    until(b, lambda: any(short in row and "model_not_found" in row for row in dlq_rows(b)), 20, "the dead letter")
    until(b, lambda: any(short in str(r.text) for r in b.find_elements(By.CSS_SELECTOR, "#failures tbody tr")), 20, "the failure")
    # Fix the cause, then re-drive from the page.
    client.register_model(WEIGHTS, name="late-model", labels=list(shapes.LABELS), input_size=(128, 128))
    seq = client.dead_letters()[0]["seq"]
    assert client.dead_letters()[0]["job_id"] == job_id
    # The table re-renders every 2 s: click the button of that row as the page has it right now.
    b.execute_script(f"document.querySelector('#dlq tr[data-seq=\"{seq}\"] button.redrive').click()")
    until(b, lambda: not any(short in row for row in dlq_rows(b)), 20, "the letter gone after re-drive")
    until(
        b,
        lambda: any(
            short in str(r.text) and "completed" in str(r.text) for r in b.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
        ),
        60,
        "the re-driven job completed",
    )
    assert client.status(job_id)["status"] == "completed"
    assert b.find_element(By.ID, "error").text == ""
    assert violations(b) == []
