"""Quantize: `model.v1.quantize.requested` / `model.v1.edit.requested` → a new hybrid/int8 version
with STEP/CROSS reports → `model.v1.quantized`; `model.v1.registered` → the version's graph JSON."""

from __future__ import annotations

from collections.abc import Awaitable

import torch

from maskline.contracts import model_v1
from maskline.services.quantize.job import QuantizeJobs
from maskline.services.quantize.settings import QuantizeSettings
from maskline.shared.jobs.fence import Fences, fenced
from maskline.shared.models.access import Grants, ModelAccess
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.service.consumer import ConsumerSpec
from maskline.shared.service.runtime import Runtime

NAME = "quantize"


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    settings = runtime.settings
    assert isinstance(settings, QuantizeSettings)
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    registry = await ModelRegistry.opened(runtime.bus.js)
    grants = await Grants.opened(runtime.bus.js)
    jobs = QuantizeJobs(runtime.store, registry, ModelAccess(registry, grants), runtime.bus, settings)
    fences = await Fences.opened(runtime.bus.js, runtime.bus)
    for subject, handler, failure in (
        # One quantized event (and one registered version) per job, whatever crashes or wakes up late.
        (model_v1.QUANTIZE_REQUESTED, fenced(fences, "quantize", jobs.quantize), model_v1.FAILED),
        (model_v1.EDIT_REQUESTED, fenced(fences, "edit", jobs.edit), model_v1.FAILED),
        (model_v1.REGISTERED, jobs.describe, None),
        (model_v1.FEATURE_MAPS_REQUESTED, jobs.feature_maps, model_v1.FAILED),  # a picture: a redo costs nothing
    ):
        # torch work: one job at a time uses every core
        runtime.consume(ConsumerSpec.for_subject(NAME, subject, handler, failure=failure, concurrency=1))
    return []
