"""The whole embedded stack (nats-server, tritonserver, every service) on free ports, once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from maskline.client import Client
from maskline.infra.embedded.process import free_port
from maskline.infra.embedded.settings import StackSettings
from maskline.infra.embedded.stack import Stack

MAX_UPLOAD = 3_000_000


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack")
    settings = StackSettings(
        home=str(home),
        nats_port=free_port(),
        nats_monitor_port=free_port(),
        triton_http_port=free_port(),
        triton_grpc_port=free_port(),
        triton_metrics_port=free_port(),
        port=free_port(),
        api_keys="key-a:tenant-a,key-b:tenant-b",
    )
    s = Stack(settings, extra_env={"MASKLINE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "MASKLINE_MAX_PIXELS": "4000000"})
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
