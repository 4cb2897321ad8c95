"""Liveness and readiness over plain HTTP for a worker (`MASKLINE_HEALTH_PORT`), for the probes of
container orchestrators: Kubernetes' httpGet probes and compose's healthcheck (`python -m
maskline.shared.probes`) ask the process itself, not the bus, so a NATS outage makes an instance
not ready (it takes no work) without making it look dead (no restart storm).

- `GET /livez`  200 while the event loop answers;
- `GET /readyz` 200 / 503 with the readiness checks as JSON (the same ones `maskline.<svc>.status` reports);
- `GET /metrics` the instance's Prometheus metrics (operations/metrics.py).
HEAD answers each with the GET's status and headers; query strings (`/metrics?name[]=...`, as
Prometheus may send) are ignored; anything else is 404.

Served by `aiohttp.web`: its AppRunner runs inside the worker's own event loop and stops when the
worker does, without taking over signals or the loop as uvicorn does, and it brings HTTP/1.1
parsing (HEAD, query strings, keep-alive, malformed requests) that a hand-read request line lacked.
Litestar stays the gateway's: three fixed answers need no ASGI application.
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from collections.abc import Awaitable, Callable

from aiohttp import web

Readiness = Callable[[], Awaitable[dict[str, bool]]]
#: The Prometheus text format (0.0.4), the one every Prometheus scrapes; prometheus_client writes it.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: A probe or scrape in flight when the worker stops gets this long; the drain must not wait on it.
SHUTDOWN_S = 2.0


def probe_app(readiness: Readiness, metrics: Callable[[], bytes] | None = None) -> web.Application:
    """The probes' routes: `add_get` also answers HEAD, as Kubernetes' and load balancers' checks may ask."""

    async def live(_: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(_: web.Request) -> web.Response:
        checks = await readiness()
        ok = all(checks.values())
        return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/livez", live)
    app.router.add_get("/readyz", ready)
    if metrics is not None:

        async def scrape(_: web.Request) -> web.Response:
            return web.Response(body=metrics(), headers={"Content-Type": METRICS_CONTENT_TYPE})

        app.router.add_get("/metrics", scrape)
    return app


async def serve_probes(port: int, readiness: Readiness, stop: asyncio.Event, metrics: Callable[[], bytes] | None = None) -> None:
    """Answer probes (and scrapes) on `port` (all interfaces: the kubelet connects to the pod's IP) until `stop`."""
    # No access log: the kubelet asks every few seconds, which would drown the worker's own events.
    runner = web.AppRunner(probe_app(readiness, metrics), access_log=None, shutdown_timeout=SHUTDOWN_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host="0.0.0.0", port=port).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def probe(port: int, path: str = "/readyz", timeout_s: float = 3.0) -> bool:
    """True when the process on `port` (loopback) answers `path` with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":  # a container healthcheck: python -m maskline.shared.probes [/livez [PORT]]
    # One word per argument: podman's Docker API splits a healthcheck's arguments on spaces, so
    # `python -c "import ..."` checks never pass there. The gateway names its own port (8080).
    port = int(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("MASKLINE_HEALTH_PORT") or 0)
    if not port:
        sys.exit("MASKLINE_HEALTH_PORT is not set: the service serves no probes")
    sys.exit(0 if probe(port, sys.argv[1] if len(sys.argv) > 1 else "/readyz") else 1)
