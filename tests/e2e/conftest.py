"""The whole embedded stack (nats-server, tritonserver, every service) on free ports, once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maskline.client import Client
from maskline.infra.embedded.settings import StackSettings, on_free_ports
from maskline.infra.embedded.stack import Stack

MAX_UPLOAD = 3_000_000


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack")
    settings = on_free_ports(StackSettings(), str(home), api_keys="key-a:tenant-a,key-b:tenant-b")
    s = Stack(
        settings,
        extra_env={
            "MASKLINE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            "MASKLINE_MAX_PIXELS": "4000000",
            "MASKLINE_OPERATORS": "tenant-a",
        },
    )
    s.up()
    yield s
    s.down()


@pytest.fixture(scope="session")
def client(stack: Stack) -> Iterator[Client]:
    c = Client(stack.gateway_url, api_key="key-a", timeout=120)
    yield c
    c.close()


@pytest.fixture(scope="session")
def other_tenant(stack: Stack) -> Iterator[Client]:
    c = Client(stack.gateway_url, api_key="key-b", timeout=60)
    yield c
    c.close()


@pytest.fixture
def samples() -> Path:
    return Path(__file__).resolve().parents[2] / "models" / "starter" / "samples"
