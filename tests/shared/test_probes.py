"""The worker's HTTP probes, served on a real socket and asked as Kubernetes, compose and Prometheus ask."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from maskline.infra.embedded.process import free_port
from maskline.shared.probes import serve_probes

pytestmark = pytest.mark.unit
METRICS = b'# TYPE maskline_build_info gauge\nmaskline_build_info{service="ingest",version="0"} 1.0\n'


def served(checks: dict[str, bool], ask: Callable[[httpx.AsyncClient], Awaitable[list[httpx.Response]]]) -> list[httpx.Response]:
    """`ask` the probes of a worker whose readiness is `checks`, then stop them as the worker does."""
    port = free_port()

    async def readiness() -> dict[str, bool]:
        return dict(checks)

    async def scenario() -> list[httpx.Response]:
        stop = asyncio.Event()
        server = asyncio.create_task(serve_probes(port, readiness, stop, lambda: METRICS))
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answers = await ask(http)
            # stopped while the client still holds a kept-alive connection, as Prometheus does: the
            # worker's drain does not wait on it
            stop.set()
            started = time.monotonic()
            await asyncio.wait_for(server, 10)
            assert time.monotonic() - started < 1.5
        return answers

    return asyncio.run(scenario())


def test_live_while_the_loop_answers_ready_only_when_every_check_passes() -> None:
    checks = {"nats": True, "flowing": True}

    async def ask(http: httpx.AsyncClient) -> list[httpx.Response]:
        answers = []
        for path, flowing in (("/livez", False), ("/readyz", True), ("/readyz", False), ("/nope", True)):
            checks["flowing"] = flowing
            answers.append(await http.get(path))
        return answers

    live, ready, paused, unknown = served(checks, ask)
    assert (live.status_code, live.json()) == (200, {"live": True})  # liveness does not depend on the bus
    assert (ready.status_code, ready.json()) == (200, {"ready": True, "checks": {"nats": True, "flowing": True}})
    assert (paused.status_code, paused.json()) == (503, {"ready": False, "checks": {"nats": True, "flowing": False}})
    assert unknown.status_code == 404


def test_a_failing_check_makes_the_instance_not_ready() -> None:
    async def ask(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [await http.get("/readyz"), await http.get("/livez")]

    ready, live = served({"nats": False, "store": True}, ask)
    assert (ready.status_code, ready.json()) == (503, {"ready": False, "checks": {"nats": False, "store": True}})
    assert live.status_code == 200  # not ready is not dead: no restart


def test_scrapes_with_a_query_string_and_head_requests_are_answered() -> None:
    async def ask(http: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await http.get("/metrics", params={"name[]": "maskline_build_info"}),  # Prometheus's federation style
            await http.head("/livez"),
            await http.head("/readyz"),
            await http.get("/livez?verbose=1"),
            await http.post("/livez"),
        ]

    scrape, head_live, head_ready, live_query, post = served({"nats": True}, ask)
    assert scrape.status_code == 200 and scrape.content == METRICS
    assert scrape.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert head_live.status_code == 200 and head_live.content == b""
    assert head_ready.status_code == 200 and head_ready.content == b""
    assert live_query.status_code == 200
    assert post.status_code == 405


def test_a_malformed_request_gets_400_and_the_probes_keep_answering() -> None:
    async def ask(http: httpx.AsyncClient) -> list[httpx.Response]:
        host, port = str(http.base_url.host), int(http.base_url.port or 0)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"NONSENSE\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        await writer.wait_closed()
        assert status_line.split(b" ")[1] == b"400", status_line
        return [await http.get("/livez")]

    (live,) = served({"nats": True}, ask)
    assert live.status_code == 200


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
        # The gateway's form: the path and port as words of their own (podman splits on spaces).
        named = [*command, "/readyz", str(port)]
        named_up = await asyncio.to_thread(subprocess.run, named, env={**os.environ, "MASKLINE_HEALTH_PORT": "1"}, timeout=30)
        stop.set()
        await server
        down = await asyncio.to_thread(subprocess.run, command, env=env, timeout=30)
        return up.returncode, named_up.returncode, down.returncode

    assert asyncio.run(scenario()) == (0, 0, 1)
