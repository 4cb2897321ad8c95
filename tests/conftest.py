"""Real servers for the test session: nats-server (authentication on, as in production),
tritonserver and an MLflow tracking server on free ports, torn down after."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from maskline.infra.embedded import credentials
from maskline.infra.embedded.nats import start_nats
from maskline.infra.embedded.process import free_port, spawn, stop_pid, wait_until
from maskline.infra.embedded.triton import start_triton
from maskline.shared.bus import Bus, connect
from maskline.shared.config import RuntimeSettings
from maskline.shared.provision import provision

#: Outside systems of the session's nats-server, each bound to one tenant.
BUS_CLIENTS = "partner-t1:t1,partner-t2:t2"

#: The tiers (pyproject's markers): `./dev test -m unit` and friends pick by them, so a test with
#: none would run only in the whole suite, and nobody would know what it needs.
TIERS = ("unit", "nats", "integration", "triton", "e2e", "compose")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(tier) for tier in TIERS)]
    if unmarked:
        raise pytest.UsageError(f"tests without a tier marker ({', '.join(TIERS)}): {', '.join(unmarked)}")


@pytest.fixture(scope="session")
def nats_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nats")


@pytest.fixture(scope="session")
def nats_url(nats_home: Path) -> Iterator[str]:
    port = free_port()
    made = credentials.ensure(nats_home, BUS_CLIENTS)
    proc = start_nats(nats_home, port, free_port(), credentials.authorization(made))
    yield f"nats://127.0.0.1:{port}"
    stop_pid(proc.pid)


def as_identity(nats_url: str, nats_home: Path, identity: str, **extra: object) -> RuntimeSettings:
    """Settings that connect to the session's nats-server as `identity` (a service, admin, a bus client)."""
    return RuntimeSettings(
        nats_url=nats_url,
        nats_identity=identity,
        nats_credentials_dir=str(nats_home / "credentials"),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real MLflow tracking server (SQLite behind it) that the train service logs runs to."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    argv += ["--backend-store-uri", f"sqlite:///{home / 'runs.db'}", "--default-artifact-root", str(home / "artifacts")]
    log = home / "mlflow.log"
    server = spawn(argv, log, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/health"), 120, "mlflow server", server, log)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # uvicorn and its worker
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


#: The people the test identity provider knows: one of them an owner adds to tenant-a; another
#: claims the same address under another subject; a third has no account here; a fourth's address
#: is not verified; the fifth's is in tenant-a's domain but tenant-b added it; the sixth's account
#: has a password.
SSO_PEOPLE = (
    {"sub": "sso-ana", "email": "ana-sso@a.example", "email_verified": True},
    {"sub": "sso-imposter", "email": "ana-sso@a.example", "email_verified": True},
    {"sub": "sso-stranger", "email": "stranger@elsewhere.example", "email_verified": True},
    {"sub": "sso-unverified", "email": "ana-sso@a.example"},
    {"sub": "sso-bob", "email": "bob-sso@a.example", "email_verified": True},
    {"sub": "sso-pat", "email": "pat-sso@a.example", "email_verified": True},
)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The issuer URL of a real OpenID Connect provider on loopback (oidc-provider-mock): discovery,
    authorization, token endpoint, signed ID tokens, JWKS; it requires a nonce."""
    home = tmp_path_factory.mktemp("oidc")
    port = free_port()
    argv = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), "--host", "127.0.0.1", "--require-nonce", "true"]
    for person in SSO_PEOPLE:
        argv += ["--user-claims", json.dumps(person)]
    log = home / "oidc.log"
    server = spawn(argv, log, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/.well-known/openid-configuration"), 60, "the OpenID Connect provider", server, log)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(host:port, model repository) of a real tritonserver with explicit model control."""
    home = tmp_path_factory.mktemp("triton")
    port = free_port()
    repository = home / "triton" / "models"
    proc: subprocess.Popen[bytes] = start_triton(home, repository, port, free_port(), free_port())
    yield f"127.0.0.1:{port}", repository
    stop_pid(proc.pid)


@pytest.fixture
async def bus(nats_url: str, nats_home: Path) -> AsyncIterator[Bus]:
    """The provisioning identity's connection (streams and buckets made, as the stack does)."""
    b = await connect(as_identity(nats_url, nats_home, "admin"), "tests", identity="admin")
    await provision(b.js)
    yield b
    await b.close()


@pytest.fixture
def settings(nats_url: str, nats_home: Path, tmp_path: Path) -> RuntimeSettings:
    return as_identity(nats_url, nats_home, "admin", store_path=str(tmp_path / "objects"))


async def eventually(check, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async `check` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)
