"""The console's pages in a real browser (headless Chromium): sign in, make a personal key, segment
an image and see mask, overlay and regions; a viewer is refused by the server, not only the page.
Each page is checked with axe-core (no serious or critical violations) and its screenshot kept."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from maskline.infra.embedded.stack import Stack
from maskline.models import starter
from tests.e2e.accessibility import violations
from tests.e2e.conftest import Account, person, sign_in, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def text(b: WebDriver, element_id: str) -> str:
    return str(b.find_element(By.ID, element_id).text)


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in_and_back(browser: WebDriver, stack: Stack) -> None:
    b = browser
    b.get(f"{stack.gateway_url}/account")
    until(b, lambda: "/sign-in?next=%2Faccount" in b.current_url, 20, "the sign-in page")
    b.find_element(By.ID, "login").send_keys("nobody@example.com")
    b.find_element(By.ID, "password").send_keys("not a password of anyone")
    b.find_element(By.ID, "submit").click()
    until(b, lambda: "wrong sign-in name or password" in text(b, "error"), 20, "the refusal")
    assert violations(b) == []
    assert "password" not in b.current_url and "key" not in b.current_url


def test_the_account_page_makes_a_personal_key_that_works_and_revokes_it(
    browser: WebDriver, stack: Stack, console_owner: Account
) -> None:
    b = browser
    sign_in(b, stack, console_owner, "/account")
    cookie = b.get_cookie("__Host-maskline-session")
    assert cookie is not None and cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax", cookie
    assert b.execute_script("return document.cookie") == ""  # HttpOnly: no script of a page can read it
    until(b, lambda: console_owner.login in text(b, "you"), 20, "who is signed in")
    b.find_element(By.ID, "key-name").send_keys("from the browser")
    b.find_element(By.CSS_SELECTOR, "#new-key button").click()
    until(b, lambda: "mlk_" in text(b, "made-key"), 20, "the new key, shown once")
    key = text(b, "made-key").split()[-1]
    me = httpx.get(f"{stack.gateway_url}/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert (me["tenant"], me["user"], me["role"], me["via"]) == ("tenant-a", console_owner.id, "owner", "personal-key")
    until(b, lambda: "from the browser" in text(b, "keys"), 20, "the key in the list")
    until(b, lambda: console_owner.login in text(b, "people"), 20, "the tenant's people")

    def audited() -> bool:  # audit records the event a moment later: read the page again until it shows
        b.refresh()
        until(b, lambda: console_owner.login in text(b, "people"), 20, "the tenant's people")
        return "key-created" in text(b, "trail")

    until(b, audited, 30, "the audited key")
    assert violations(b) == []
    b.find_element(By.XPATH, "//button[text()='Revoke from the browser']").click()
    until(b, lambda: "from the browser" not in text(b, "keys"), 20, "the key gone")
    assert httpx.get(f"{stack.gateway_url}/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_the_segment_page_shows_mask_overlay_and_regions_side_by_side(
    browser: WebDriver, stack: Stack, console_owner: Account
) -> None:
    b = browser
    sign_in(b, stack, console_owner, "/segment")
    until(b, lambda: b.find_elements(By.CSS_SELECTOR, "#model option"), 30, "the models")
    b.find_element(By.ID, "image").send_keys(str(starter.SAMPLES / "shapes-1.png"))
    b.find_element(By.ID, "submit").click()
    until(b, lambda: text(b, "status") == "completed", 90, "the job completed (its event stream)")

    def loaded(element_id: str) -> bool:
        return bool(
            b.execute_script(f"const i = document.getElementById('{element_id}'); return i.complete && i.naturalWidth > 0")
        )

    until(b, lambda: loaded("overlay") and loaded("mask") and loaded("original"), 30, "the three pictures")
    rows = b.find_elements(By.CSS_SELECTOR, "#regions tbody tr")
    assert rows, "no region listed"
    links = [a.text for a in b.find_elements(By.CSS_SELECTOR, "#downloads a")]
    assert {"mask", "overlay", "regions", "COCO", "Label Studio"} <= set(links), links
    coco = b.find_element(By.LINK_TEXT, "COCO").get_attribute("href")
    answered = b.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.json()).then(j => done(Array.isArray(j) ? j.length : -1), e => done(String(e)));",
        coco,
    )
    assert answered == len(rows), answered  # the COCO results file: one annotation a region
    assert violations(b) == []


def test_a_viewer_cannot_segment_from_the_page_and_the_server_refuses_it_too(browser: WebDriver, stack: Stack) -> None:
    b = browser
    viewer = person("key-a", stack, "viewer")
    sign_in(b, stack, viewer, "/segment")
    until(b, lambda: "viewer" in text(b, "error"), 20, "the page saying a viewer may not start jobs")
    assert not b.find_element(By.ID, "submit").is_enabled()
    # The page's own request, past its disabled button: the server decides.
    answer = b.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const data = new FormData(); data.append('image', new Blob([new Uint8Array(8)], {type: 'image/png'}), 'a.png');"
        "maskline.api('/v1/segmentations', {method: 'POST', body: data}).then(() => done('accepted'), e => done(e.code));"
    )
    assert answer == "role_forbidden"
    assert violations(b) == []
