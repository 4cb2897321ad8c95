"""`/v1/services`: the fleet as the bus sees it — instances, readiness, queues between stages, dead letters."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, get

from maskline.services.gateway.core.auth import Caller
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.bus import STREAMS, Bus
from maskline.shared.operations.fleet import SERVICES, discover, queues, statuses
from maskline.shared.operations.heartbeat import STALE_AFTER, fleet


def triton_view(report: dict[str, Any] | None, operator: bool) -> dict[str, Any] | None:
    """An infer instance's Triton against its memory budget: the loaded versions' names are
    tenants' model names, so only operators see the list; everyone sees the totals."""
    if report is None or operator:
        return report
    return {k: v for k, v in report.items() if k != "loaded"} | {"loaded_versions": len(report.get("loaded", []))}


def scoped(consumers: dict[str, dict[str, Any]], tenant: str, operator: bool) -> dict[str, dict[str, Any]]:
    """Consumer counters as `tenant` may see them: a last error names the job, keys and webhook URL
    of the tenant it happened to, so only that tenant and operators read its text."""
    if operator:
        return consumers
    return {
        name: {**stats, "last_error": stats.get("last_error", "") if stats.get("last_error_tenant") == tenant else ""}
        for name, stats in consumers.items()
    }


class FleetController(Controller):
    path = "/v1/services"
    tags = ["operations"]

    @get(summary="Every running service instance, stage queues and the dead-letter count")
    async def fleet(self, bus: Bus, settings: GatewaySettings, caller: Caller) -> dict[str, Any]:
        operator, tenant = caller.operator, caller.tenant
        registered, status, beats = await asyncio.gather(discover(bus.nc), statuses(bus.nc, list(SERVICES)), fleet(bus.js))
        micro_ids = {i.get("metadata", {}).get("instance"): i["id"] for i in registered}
        services = []
        for name in SERVICES:
            s = status[name]
            own = [
                {
                    "instance": b["instance"],
                    "state": b["state"],
                    "ready": bool(b.get("ready")) and b["state"] == "up",
                    "version": b.get("version"),
                    "uptime_s": b.get("uptime_s"),
                    "last_heartbeat_s_ago": b["last_heartbeat_s_ago"],
                    "id": micro_ids.get(b["instance"]),
                    "consumers": scoped(b.get("consumers", {}), tenant, operator),
                    **({"triton": triton_view(b["triton"], operator)} if "triton" in b else {}),
                }
                for b in beats
                if b.get("service") == name
            ]
            up = [i for i in own if i["state"] == "up"]
            services.append(
                {
                    "name": name,
                    "state": "up" if any(i["ready"] for i in up) else "degraded" if up else "down",
                    "instances": own,
                    "ready": bool(s and s["ready"]),
                    "checks": s["checks"] if s else {},
                    "uptime_s": s["uptime_s"] if s else None,
                    "consumers": scoped(s["consumers"], tenant, operator) if s else {},
                }
            )
        dlq = await bus.js.stream_info("DLQ")
        return {
            "services": services,
            "queues": await queues(bus.js, STREAMS),
            "dead_letters": dlq.state.messages,
            "stale_after_s": STALE_AFTER * settings.heartbeat_s,
        }
