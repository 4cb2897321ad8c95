"""Weights: checks and registers uploaded model weights, merges registered versions into new ones
(avg, max, absmax, weighted, ...) and runs federated rounds. Split from merge, which fuses and
renders predictions on the segmentation path: the two scale on different loads, and only this one
needs torch (decision record 0007)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope
from maskline.services.weights.alias_guards import AliasGuards
from maskline.services.weights.job import merge_models
from maskline.services.weights.registration import Registrations
from maskline.services.weights.rounds import Rounds
from maskline.services.weights.settings import WeightsSettings
from maskline.shared.jobs.fence import Fences, fenced
from maskline.shared.models.access import Grants, ModelAccess
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.models.shadows import ShadowTallies
from maskline.shared.operations.quality import QualityStore
from maskline.shared.service.consumer import ConsumerSpec
from maskline.shared.service.runtime import Runtime

NAME = "weights"


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    fences = await Fences.opened(runtime.bus.js, runtime.bus)
    registry = await ModelRegistry.opened(runtime.bus.js)
    grants = await Grants.opened(runtime.bus.js)
    access = ModelAccess(registry, grants)

    async def on_merge_models(env: Envelope[model_v1.ModelMergeRequested]) -> list[Envelope[Any]]:
        return list(await merge_models(runtime.store, registry, access, runtime.bus, env))

    merge_jobs = fenced(fences, "merge", on_merge_models)  # one merged event (and version) per job

    rounds = await Rounds.opened(runtime.bus.js, runtime.bus, runtime.store, registry, access, fences)
    runtime.consume(
        ConsumerSpec.for_subject(NAME, model_v1.ROUND_OPENED, rounds.on_opened, failure=model_v1.FAILED, concurrency=1)
    )
    runtime.consume(ConsumerSpec.for_subject(NAME, model_v1.UPDATE_SUBMITTED, rounds.on_update, concurrency=1))
    runtime.consume(
        ConsumerSpec.for_subject(NAME, model_v1.FEDERATION_STOP_REQUESTED, rounds.on_stop, failure=model_v1.FAILED, concurrency=1)
    )
    registrations = Registrations(runtime, registry, NAME)
    runtime.consume(
        ConsumerSpec.for_subject(NAME, model_v1.REGISTER_REQUESTED, registrations.handle, failure=model_v1.FAILED, concurrency=1)
    )
    runtime.consume(ConsumerSpec.for_subject(NAME, model_v1.MERGE_REQUESTED, merge_jobs, failure=model_v1.FAILED, concurrency=1))
    settings = runtime.settings
    assert isinstance(settings, WeightsSettings)
    guards = AliasGuards(
        registry, await QualityStore.opened(runtime.bus.js), await ShadowTallies.opened(runtime.bus.js), runtime.bus
    )
    return [rounds.watch_deadlines(runtime.stopping), guards.run(runtime.stopping, settings.guard_check_every_s)]
