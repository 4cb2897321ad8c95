"""Ask the fleet, over the bus alone, how each service is doing (the `maskline.<svc>.status` endpoints)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from maskline.contracts.subjects import SERVICES
from maskline.shared.bus import connect
from maskline.shared.config import RuntimeSettings

__all__ = ["SERVICES", "discover", "queues", "service_status", "statuses"]


async def statuses(nc: Any, names: list[str], timeout: float = 1.0) -> dict[str, dict[str, Any] | None]:
    """Status of one instance of each service over an open connection, None where none answered."""

    async def one(name: str) -> dict[str, Any] | None:
        try:
            reply = await nc.request(f"maskline.{name}.status", b"", timeout=timeout)
            return dict(json.loads(reply.data))
        except Exception:
            return None

    results = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, results, strict=True))


async def service_status(settings: RuntimeSettings, names: list[str], timeout: float = 1.0) -> dict[str, dict[str, Any] | None]:
    """Status of one instance of each service, None where none answered."""
    bus = await connect(settings, "status", identity=settings.nats_identity or "admin", reconnect=False)
    try:
        return await statuses(bus.nc, names, timeout)
    finally:
        await bus.nc.close()


async def discover(nc: Any, wait_s: float = 0.3) -> list[dict[str, Any]]:
    """Every running instance that registered with the NATS services API (`$SRV.INFO` replies)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish("$SRV.INFO", b"", reply=inbox)
    found: list[dict[str, Any]] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=wait_s)
            found.append(json.loads(msg.data))
    except Exception:  # nats' TimeoutError: no more replies
        pass
    finally:
        await sub.unsubscribe()
    return found


async def queues(js: Any, streams: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Pending (not yet delivered) and in-flight (delivered, not acked) counts of every durable consumer."""
    rows = []
    for stream in streams:
        try:
            consumers = await js.consumers_info(stream)
        except Exception:
            continue
        for info in consumers:
            if not info.config.durable_name:
                continue  # a short-lived reader (listings), not a stage
            rows.append(
                {
                    "stream": stream,
                    "consumer": info.name,
                    "pending": info.num_pending,
                    "in_flight": info.num_ack_pending,
                    "redelivered": info.num_redelivered,
                }
            )
    return sorted(rows, key=lambda r: (r["stream"], r["consumer"]))
