"""Single sign-on against a real OpenID Connect provider on loopback (oidc-provider-mock, started by
tests/conftest.py): the authorization code flow with PKCE, state and nonce, over HTTP as a browser
follows it, and once in a real browser."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from tests.e2e.accessibility import violations
from tests.e2e.conftest import AS_ANSWERED, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SESSION, HANDLE = "__Host-maskline-session", "__Host-maskline-sso"
ANA = "ana-sso@a.example"


@pytest.fixture(scope="module")
def ana(stack: Stack) -> str:
    """A member of tenant-a who signs in through the provider only (no password)."""
    owner = JsonClient(stack.gateway_url, api_key="key-a", timeout=60, retry=AS_ANSWERED)
    try:
        made = owner.http.post("/v1/users", json={"login": ANA, "role": "member"}).raise_for_status().json()
    finally:
        owner.close()
    return str(made["id"])


def started(stack: Stack, next_: str = "/segment") -> tuple[str, str]:
    """Our first redirect: (the provider's authorization address, the browser's handle cookie)."""
    start = httpx.get(f"{stack.gateway_url}/v1/sign-in/oidc", params={"next": next_})
    assert start.status_code == 302, start.text
    return start.headers["location"], start.cookies[HANDLE]


def at_provider(location: str, subject: str) -> str:
    """The person picks who they are at the provider: the provider's redirect back to us."""
    granted = httpx.post(location, data={"sub": subject})
    assert granted.status_code == 302, granted.text
    return str(granted.headers["location"])


def back(callback: str, handle: str | None) -> httpx.Response:
    return httpx.get(callback, headers={"Cookie": f"{HANDLE}={handle}"} if handle else {})


def refused_with(answer: httpx.Response, words: str) -> None:
    assert answer.status_code == 302 and answer.headers["location"].startswith("/sign-in?error="), answer.headers
    assert words in parse_qs(urlparse(answer.headers["location"]).query)["error"][0]
    assert SESSION not in answer.cookies


def test_the_flow_uses_pkce_state_and_nonce_and_signs_in_a_person_an_owner_added(stack: Stack, ana: str) -> None:
    location, handle = started(stack, "/account")
    asked = parse_qs(urlparse(location).query)
    assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) == 43
    assert asked["state"][0] and asked["nonce"][0] and asked["scope"] == ["openid email"]
    assert asked["redirect_uri"] == [f"{stack.gateway_url}/v1/sign-in/oidc/callback"]
    assert handle not in location  # the browser's handle never travels to the provider
    answer = back(at_provider(location, "sso-ana"), handle)
    assert answer.status_code == 302 and answer.headers["location"] == "/account", answer.headers
    token = answer.cookies[SESSION]
    me = httpx.get(f"{stack.gateway_url}/v1/me", headers={"Cookie": f"{SESSION}={token}"}).json()
    assert (me["tenant"], me["user"], me["login"], me["role"], me["via"]) == ("tenant-a", ana, ANA, "member", "session")
    owner = JsonClient(stack.gateway_url, api_key="key-a", timeout=60, retry=AS_ANSWERED)
    trail = [r["event"]["data"] for r in owner.http.get("/v1/users/trail").json() if r["event"]["data"].get("user") == ana]
    owner.close()
    assert [(d["action"], d.get("method")) for d in trail][-1] == ("signed-in", "oidc")


def test_an_address_bound_to_one_subject_does_not_sign_in_another(stack: Stack, ana: str) -> None:
    location, handle = started(stack)
    assert back(at_provider(location, "sso-ana"), handle).status_code == 302  # binds ana to sso-ana (or already did)
    location, handle = started(stack)
    refused_with(back(at_provider(location, "sso-imposter"), handle), "bound to another identity")


def test_a_person_nobody_added_is_not_created_by_signing_in(stack: Stack) -> None:
    location, handle = started(stack)
    refused_with(back(at_provider(location, "sso-stranger"), handle), "no one signs in as stranger@elsewhere.example")


def test_a_forged_state_another_browser_or_a_replayed_answer_is_refused(stack: Stack, ana: str) -> None:
    location, handle = started(stack)
    callback = at_provider(location, "sso-ana")
    forged = callback.replace("state=", "state=x")
    refused_with(back(forged, handle), "does not belong to this sign-in")
    refused_with(back(callback, handle), "try again")  # the forged try used the sign-in up: no second go
    location, handle = started(stack)
    refused_with(back(at_provider(location, "sso-ana"), None), "another browser")


def test_the_return_address_is_a_path_of_this_site_only(stack: Stack, ana: str) -> None:
    location, handle = started(stack, "https://attacker.example/steal")
    answer = back(at_provider(location, "sso-ana"), handle)
    assert answer.headers["location"] == "/segment"


def test_a_browser_signs_in_through_the_provider_from_the_sign_in_page(browser: WebDriver, stack: Stack, ana: str) -> None:
    b = browser
    b.get(f"{stack.gateway_url}/sign-in?next=/account")
    until(b, lambda: b.find_element(By.ID, "sso").is_displayed(), 20, "the single sign-on link")
    assert violations(b) == []
    b.find_element(By.ID, "sso-link").click()
    until(b, lambda: b.find_elements(By.CSS_SELECTOR, "button[name=sub][value=sso-ana]"), 20, "the provider's page")
    b.find_element(By.CSS_SELECTOR, "button[name=sub][value=sso-ana]").click()
    until(b, lambda: b.current_url.endswith("/account"), 20, "the account page, signed in")
    until(b, lambda: ANA in b.find_element(By.ID, "you").text, 20, "who is signed in")


def test_an_unverified_address_or_another_tenants_domain_does_not_sign_in(stack: Stack, ana: str) -> None:
    location, handle = started(stack)
    refused_with(back(at_provider(location, "sso-unverified"), handle), "no verified e-mail address")
    # tenant-b adds an address of tenant-a's domain: the provider's person is not handed to tenant-b.
    other = JsonClient(stack.gateway_url, api_key="key-b", timeout=60, retry=AS_ANSWERED)
    other.http.post("/v1/users", json={"login": "bob-sso@a.example", "role": "owner"}).raise_for_status()
    other.close()
    location, handle = started(stack)
    refused_with(back(at_provider(location, "sso-bob"), handle), "a.example is not a domain of tenant-b")


def test_a_person_with_a_password_does_not_sign_in_through_the_provider(stack: Stack) -> None:
    """An account made with a password is never bound to the provider: whoever controls the address
    there does not get the account."""
    owner = JsonClient(stack.gateway_url, api_key="key-a", timeout=60, retry=AS_ANSWERED)
    body = {"login": "pat-sso@a.example", "role": "owner", "password": "a long enough password"}
    owner.http.post("/v1/users", json=body).raise_for_status()
    owner.close()
    location, handle = started(stack)
    refused_with(back(at_provider(location, "sso-pat"), handle), "through single sign-on here")
