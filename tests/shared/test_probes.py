"""The worker's HTTP probes, served on a real socket and asked as Kubernetes and compose ask."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest

from maskline.infra.embedded.process import free_port
from maskline.shared.probes import serve_probes

pytestmark = pytest.mark.unit


def test_live_while_the_loop_answers_ready_only_when_every_check_passes() -> None:
    port = free_port()
    checks = {"nats": True, "flowing": True}

    async def readiness() -> dict[str, bool]:
        return dict(checks)

    async def scenario() -> list[tuple[int, dict[str, object]]]:
        stop = asyncio.Event()
        server = asyncio.create_task(serve_probes(port, readiness, stop))
        await asyncio.sleep(0.2)
        answers = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for path, flowing in (("/livez", False), ("/readyz", True), ("/readyz", False), ("/nope", True)):
                checks["flowing"] = flowing
                response = await http.get(path)
                answers.append((response.status_code, response.json()))
        stop.set()
        await server
        return answers

    live, ready, paused, unknown = asyncio.run(scenario())
    assert live == (200, {"live": True})  # liveness does not depend on the bus or a dependency
    assert ready == (200, {"ready": True, "checks": {"nats": True, "flowing": True}})
    assert paused == (503, {"ready": False, "checks": {"nats": True, "flowing": False}})
    assert unknown[0] == 404


def test_the_healthcheck_command_exits_by_readiness() -> None:
    port = free_port()

    async def ready() -> dict[str, bool]:
        return {"nats": True}

    async def scenario() -> tuple[int, int]:
        stop = asyncio.Event()
        server = asyncio.create_task(serve_probes(port, ready, stop))
        await asyncio.sleep(0.2)
        command = [sys.executable, "-m", "maskline.shared.probes"]
        env = {**os.environ, "MASKLINE_HEALTH_PORT": str(port)}
        up = await asyncio.to_thread(subprocess.run, command, env=env, timeout=30)
        stop.set()
        await server
        down = await asyncio.to_thread(subprocess.run, command, env=env, timeout=30)
        return up.returncode, down.returncode

    assert asyncio.run(scenario()) == (0, 1)
