"""The whole embedded stack (nats-server, tritonserver, every service) on free ports, once per session."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from maskline.client import ApiError, JsonClient
from maskline.client.retries import RetryPolicy
from maskline.infra.embedded.process import free_ports
from maskline.infra.embedded.settings import PROBE_SPAN, StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack
from maskline.models import starter
from maskline.shared.config import RuntimeSettings

#: The tests' clients report each answer as it came: they assert the platform's own refusals (429,
#: 503, 409...). The clients' retries are tested on their own (tests/client, test_lost_answers.py).
AS_ANSWERED = RetryPolicy(attempts=1)
MAX_UPLOAD = 3_000_000
MAX_MODEL = 400_000_000
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str, oidc_provider: str) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack")
    settings = on_free_ports(
        StackSettings(),
        str(home),
        api_keys="key-a:tenant-a,key-b:tenant-b,key-c:tenant-c",
        bus_clients="partner-a:tenant-a,partner-b:tenant-b,partner-c:tenant-c",
        merge_instances=2,  # a paused worker and a live one (tests/e2e/test_outages.py)
        probe_port=free_ports(PROBE_SPAN),  # every worker's /livez, /readyz and /metrics (tests/e2e/test_metrics.py)
    )
    s = Stack(
        settings,
        extra_env={
            "MASKLINE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            "MASKLINE_MAX_MODEL_BYTES": str(MAX_MODEL),
            "MASKLINE_MAX_PIXELS": "4000000",
            "MASKLINE_MAX_REQUEST_PIXELS": "6000000",
            "MASKLINE_MAX_BACKLOG": "40",
            "MASKLINE_TENANT_LIMITS": "tenant-c:2/2/3",  # a tenant with tight limits of its own
            "MASKLINE_OPERATORS": "tenant-a",
            "MASKLINE_PASSWORD_PROFILE": "CHEAPEST",  # people sign in often in the tests (test_accounts.py)
            "MASKLINE_GUARD_CHECK_EVERY_S": "3",  # alias guards act within seconds (test_quality.py)
            "MASKLINE_WEBHOOK_ALLOW_PRIVATE": "true",  # the tests' receivers listen on loopback
            "MASKLINE_TRUST_FORWARDED_FOR": "true",  # a test guesses keys from an address of its own
            "MASKLINE_MLFLOW_TRACKING_URI": mlflow_server,  # train logs finished runs (test_training.py)
            # single sign-on through a real provider on loopback (test_single_sign_on.py)
            "MASKLINE_OIDC_ISSUER": oidc_provider,
            "MASKLINE_OIDC_CLIENT_ID": "maskline-e2e",
            "MASKLINE_OIDC_CLIENT_SECRET": "e2e-client-secret",
            "MASKLINE_OIDC_DOMAINS": "tenant-a:a.example",
            "MASKLINE_PUBLIC_URL": f"http://127.0.0.1:{settings.port}",
        },
    )
    s.up()
    yield s
    s.down()


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[JsonClient]:
    c = JsonClient(stack.gateway_url, api_key="key-a", timeout=120, retry=AS_ANSWERED)
    yield c
    c.close()


@pytest.fixture(scope="session")
def other_tenant(stack: Stack) -> Iterator[JsonClient]:
    c = JsonClient(stack.gateway_url, api_key="key-b", timeout=60, retry=AS_ANSWERED)
    yield c
    c.close()


@pytest.fixture
def samples() -> Path:
    return starter.SAMPLES


@pytest.fixture(scope="session")
def admin(stack: Stack) -> RuntimeSettings:
    """The provisioning identity: what an operator (or an insider) holds; tests inspect with it."""
    return stack.client_settings("admin")


@pytest.fixture(scope="session")
def partner_a(stack: Stack) -> RuntimeSettings:
    """An outside system bound to tenant-a: it publishes onto NATS itself."""
    return stack.client_settings("partner-a")


def audited_trail(
    client: JsonClient, path: str, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """GET an audited trail until `done` holds: the audit service records an event moments after it is published."""
    deadline = time.monotonic() + timeout
    trail: list[dict[str, Any]]
    while not done(trail := client.http.get(path).json()):
        assert time.monotonic() < deadline, trail
        time.sleep(0.1)
    return trail


def recorded(client: JsonClient, job_id: str, timeout: float = 60.0) -> str:
    """`job_id` once its job exists: a follow-up job (`<job>-eval`) is asked for in the same moment as
    its parent's end, and the job projection may record it a little after the parent's completion."""

    def exists() -> bool:
        try:
            client.job(job_id)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return False
        return True

    deadline = time.monotonic() + timeout
    while not exists():
        assert time.monotonic() < deadline, f"job {job_id} not recorded after {timeout:.0f}s"
        time.sleep(0.2)
    return job_id


def cli(stack: Stack, *args: str, api_key: str = "key-a", stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`maskline ...` in a subprocess against the stack's gateway, as tenant-a by default."""
    command = [sys.executable, "-m", "maskline.cli", "--url", stack.gateway_url, "--api-key", api_key, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, input=stdin)


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """Headless Chromium; the page it ends on is kept as `build/test-artifacts/<test>.png`."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "the browser test needs Debian's chromium and chromium-driver (./dev test installs them as root)"
    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1400,1100",
    ):
        options.add_argument(flag)
    b = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield b
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        b.save_screenshot(str(ARTIFACTS / f"{request.node.name}.png"))
        b.quit()


@dataclass(frozen=True)
class Account:
    login: str
    password: str
    id: str


def person(owner_key: str, stack: Stack, role: str) -> Account:
    """A new person in the key's tenant, with a password (the console's tests sign in as them)."""
    login, password = f"{role}-{uuid.uuid4().hex[:8]}@example.com", "a console test's password"
    c = JsonClient(stack.gateway_url, api_key=owner_key, timeout=60, retry=AS_ANSWERED)
    try:
        made = c.http.post("/v1/users", json={"login": login, "role": role, "password": password}).raise_for_status().json()
    finally:
        c.close()
    return Account(login=login, password=password, id=made["id"])


@pytest.fixture(scope="session")
def console_owner(stack: Stack) -> Account:
    """An owner of tenant-a (an operator tenant), for the pages' browser tests."""
    return person("key-a", stack, "owner")


def sign_in(b: WebDriver, stack: Stack, account: Account, page: str = "/segment") -> None:
    """Through the sign-in page, as a person would; ends on `page` (a path, with its query if any),
    signed in (the session cookie)."""
    b.get(f"{stack.gateway_url}/sign-in?next={quote(page, safe='')}")
    b.find_element(By.ID, "login").send_keys(account.login)
    b.find_element(By.ID, "password").send_keys(account.password)
    b.find_element(By.ID, "submit").click()
    until(b, lambda: urlsplit(b.current_url).path == urlsplit(page).path, 20, f"{page} after signing in")
    until(b, lambda: b.find_elements(By.CSS_SELECTOR, "header.console"), 20, "the console's navigation")


def until(b: WebDriver, check: Callable[[], object], timeout: float, what: str) -> None:
    def safe(_: WebDriver) -> object:
        try:
            return check()
        except StaleElementReferenceException:  # the page re-rendered between find and read
            return False

    WebDriverWait(b, timeout, poll_frequency=0.25).until(safe, message=f"the page never showed: {what}")
