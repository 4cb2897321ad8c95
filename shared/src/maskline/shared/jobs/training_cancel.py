"""Cancelling a training (or a sweep), by its tenant (the gateway) or by its sweep's pruner (the train service):
the mark its worker reads at the next checkpoint, and the cancelled event through the job's fence,
so that a worker finishing at the same moment cannot also publish a trained event."""

from __future__ import annotations

from typing import Any

from maskline.contracts import train_v1
from maskline.contracts.envelope import Envelope, job_event
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.fence import Fences, sweep_fence, training_fence


async def _nothing_to_remove() -> None:
    return None  # a worker checks the fence before it registers: a lost fence means nothing registered


async def cancel_training(
    cancellations: Cancellations,
    fences: Fences,
    *,
    tenant: str,
    job_id: str,
    trace_id: str,
    by: str,
    source: str,
    sweep: bool = False,
) -> Envelope[Any] | None:
    """The cancelled event when the cancel won the job's fence (a training's, or with `sweep` a
    sweep's); None when the job finished first."""
    await cancellations.mark(tenant, job_id)
    event = job_event(
        train_v1.TRAIN_CANCELLED, source, train_v1.TrainCancelled(by=by), tenant=tenant, job_id=job_id, trace_id=trace_id
    )
    fence = sweep_fence(tenant, job_id) if sweep else training_fence(tenant, job_id)
    return event if await fences.finish(fence, "cancel", event, _nothing_to_remove) else None
