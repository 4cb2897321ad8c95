"""Quantize: `model.v1.quantize.requested` / `model.v1.edit.requested` → a new hybrid/int8 version
with STEP/CROSS reports → `model.v1.quantized`; `model.v1.registered` → the version's graph JSON."""

from __future__ import annotations

from collections.abc import Awaitable

import torch

from maskline.contracts import model_v1
from maskline.services.quantize.job import QuantizeJobs
from maskline.services.quantize.settings import QuantizeSettings
from maskline.shared.consumer import ConsumerSpec
from maskline.shared.registry import ModelRegistry
from maskline.shared.runtime import Runtime

NAME = "quantize"


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    settings = runtime.settings
    assert isinstance(settings, QuantizeSettings)
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    registry = ModelRegistry(runtime.bus.js)
    await registry.open(settings.stream_replicas)
    jobs = QuantizeJobs(runtime.store, registry, runtime.bus, settings)
    for durable, subject, payload, handler, failure in (
        (f"{NAME}-jobs", model_v1.QUANTIZE_REQUESTED, model_v1.QuantizeRequested, jobs.quantize, model_v1.FAILED),
        (f"{NAME}-edits", model_v1.EDIT_REQUESTED, model_v1.EditRequested, jobs.edit, model_v1.FAILED),
        (f"{NAME}-graphs", model_v1.REGISTERED, model_v1.ModelRegistered, jobs.describe, None),
    ):
        runtime.consume(
            ConsumerSpec(
                durable=durable,
                stream="MODEL",
                subject=subject,
                payload=payload,
                handler=handler,
                failure_subject=failure,
                concurrency=1,  # torch work: one job at a time uses every core
            )
        )
    return []
