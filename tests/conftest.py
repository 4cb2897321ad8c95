"""Real servers for the test session: nats-server and tritonserver on free ports, torn down after."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from maskline.infra.embedded.nats import start_nats
from maskline.infra.embedded.process import free_port, stop_pid
from maskline.infra.embedded.triton import start_triton
from maskline.shared.bus import Bus, connect, ensure_streams
from maskline.shared.config import RuntimeSettings


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("nats")
    port = free_port()
    proc = start_nats(home, port, free_port())
    yield f"nats://127.0.0.1:{port}"
    stop_pid(proc.pid)


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
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    b = await connect(RuntimeSettings(nats_url=nats_url), "tests")
    await ensure_streams(b.js)
    yield b
    await b.close()


@pytest.fixture
def settings(nats_url: str, tmp_path: Path) -> RuntimeSettings:
    return RuntimeSettings(nats_url=nats_url, store_path=str(tmp_path / "objects"))


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
