"""Ask the fleet, over the bus alone, how each service is doing (the `maskline.<svc>.status` endpoints)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats


async def service_status(nats_url: str, names: list[str], timeout: float = 1.0) -> dict[str, dict[str, Any] | None]:
    """Status of one instance of each service, None where none answered."""
    nc = await nats.connect(nats_url, connect_timeout=2, max_reconnect_attempts=0)
    try:

        async def one(name: str) -> dict[str, Any] | None:
            try:
                reply = await nc.request(f"maskline.{name}.status", b"", timeout=timeout)
                return dict(json.loads(reply.data))
            except Exception:
                return None

        results = await asyncio.gather(*(one(n) for n in names))
        return dict(zip(names, results, strict=True))
    finally:
        await nc.close()
