"""Augment: TTA variants for segmentation jobs, and whole-dataset expansion."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from maskline.contracts import dataset_v1, seg_v1
from maskline.contracts.envelope import Envelope
from maskline.services.augment.dataset import expand
from maskline.services.augment.settings import AugmentSettings
from maskline.services.augment.tta import make_variants
from maskline.shared.service.consumer import ConsumerSpec
from maskline.shared.service.runtime import Runtime

NAME = "augment"


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    settings = runtime.settings
    assert isinstance(settings, AugmentSettings)

    async def on_tta(env: Envelope[seg_v1.SegmentationIngested]) -> list[Envelope[Any]]:
        return list(await make_variants(runtime.store, env))

    async def on_expand(env: Envelope[dataset_v1.DatasetExpandRequested]) -> list[Envelope[Any]]:
        return list(await expand(runtime.store, env, runtime.bus.publish, settings.progress_every))

    runtime.consume(
        ConsumerSpec.for_subject(NAME, seg_v1.AUGMENT_REQUESTED, on_tta, failure=seg_v1.FAILED, concurrency=settings.concurrency)
    )
    runtime.consume(
        ConsumerSpec.for_subject(NAME, dataset_v1.EXPAND_REQUESTED, on_expand, failure=dataset_v1.FAILED, concurrency=1)
    )
    return []
