"""Fold every segmentation event into the job-state bucket (a durable consumer, shared by replicas)."""

from __future__ import annotations

from typing import Any

import msgspec

from maskline.contracts.envelope import Envelope
from maskline.services.gateway.telemetry import Metrics
from maskline.shared.jobs import PAYLOADS, JobStore


class JobProjector:
    def __init__(self, jobs: JobStore, metrics: Metrics) -> None:
        self.jobs = jobs
        self.metrics = metrics

    async def handle(self, env: Envelope[msgspec.Raw]) -> list[Envelope[Any]]:
        payload_type = PAYLOADS.get(env.type)
        if payload_type is None:
            return []  # a newer minor's event type: nothing to fold
        data = msgspec.json.decode(env.data, type=payload_type)
        typed = msgspec.structs.replace(env, data=data)
        await self.jobs.apply(typed)
        self.metrics.observe(typed)
        return []
