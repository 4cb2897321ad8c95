"""`/v1/services`: the fleet as the bus sees it — instances, readiness, queues between stages, dead letters."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get

from maskline.services.gateway.context import GatewayContext
from maskline.shared.bus import STREAMS
from maskline.shared.fleet import SERVICES, discover, queues, statuses


class FleetController(Controller):
    path = "/v1/services"
    tags = ["operations"]

    @get(summary="Every running service instance, stage queues and the dead-letter count")
    async def fleet(self, ctx: GatewayContext, tenant: str) -> dict[str, Any]:
        bus = ctx.runtime.bus
        instances = await discover(bus.nc)
        status = await statuses(bus.nc, list(SERVICES))
        services = []
        for name in SERVICES:
            own = [i for i in instances if i.get("name") == f"maskline-{name}"]
            s = status[name]
            services.append(
                {
                    "name": name,
                    "instances": [
                        {"id": i["id"], "version": i["version"], "instance": i.get("metadata", {}).get("instance")} for i in own
                    ],
                    "ready": bool(s and s["ready"]),
                    "checks": s["checks"] if s else {},
                    "uptime_s": s["uptime_s"] if s else None,
                    "consumers": s["consumers"] if s else {},
                }
            )
        dlq = await bus.js.stream_info("DLQ")
        return {"services": services, "queues": await queues(bus.js, STREAMS), "dead_letters": dlq.state.messages}
