"""Liveness and readiness over plain HTTP for a worker (`MASKLINE_HEALTH_PORT`), for the probes of
container orchestrators: Kubernetes' httpGet probes and compose's healthcheck (`python -m
maskline.shared.probes`) ask the process itself, not the bus, so a NATS outage makes an instance
not ready (it takes no work) without making it look dead (no restart storm).

- `GET /livez`  200 while the event loop answers;
- `GET /readyz` 200 / 503 with the readiness checks as JSON (the same ones `maskline.<svc>.status` reports);
- `GET /metrics` the instance's Prometheus metrics (operations/metrics.py).

Workers have no HTTP framework (litestar is the gateway's): two fixed answers do not need one, so
this is asyncio's own server and a request line read by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import urllib.request
from collections.abc import Awaitable, Callable

Readiness = Callable[[], Awaitable[dict[str, bool]]]


async def serve_probes(port: int, readiness: Readiness, stop: asyncio.Event, metrics: Callable[[], bytes] | None = None) -> None:
    """Answer probes (and scrapes) on `port` (all interfaces: the kubelet connects to the pod's IP) until `stop`."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            body: dict[str, object]
            path = request_line.split(b" ")[1].decode() if request_line.count(b" ") >= 2 else ""
            if path == "/metrics" and metrics is not None:
                await _send(writer, 200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
                return
            if path == "/livez":
                status, body = 200, {"live": True}
            elif path == "/readyz":
                checks = await readiness()
                status, body = (200 if all(checks.values()) else 503), {"ready": all(checks.values()), "checks": checks}
            else:
                status, body = 404, {"error": "not found: /livez or /readyz"}
            await _send(writer, status, json.dumps(body).encode(), "application/json")
        except (OSError, TimeoutError, IndexError, UnicodeDecodeError):
            pass  # a probe that hung up or sent garbage gets nothing
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(answer, host="0.0.0.0", port=port)
    async with server:
        await stop.wait()


async def _send(writer: asyncio.StreamWriter, status: int, payload: bytes, content_type: str) -> None:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
    writer.write(head.encode() + b"Connection: close\r\n\r\n" + payload)
    await writer.drain()


def probe(port: int, path: str = "/readyz", timeout_s: float = 3.0) -> bool:
    """True when the process on `port` (loopback) answers `path` with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":  # a container healthcheck: python -m maskline.shared.probes [/livez]
    port = int(os.environ.get("MASKLINE_HEALTH_PORT") or 0)
    if not port:
        sys.exit("MASKLINE_HEALTH_PORT is not set: the service serves no probes")
    sys.exit(0 if probe(port, sys.argv[1] if len(sys.argv) > 1 else "/readyz") else 1)
