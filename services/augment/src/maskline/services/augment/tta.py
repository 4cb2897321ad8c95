"""Test-time augmentation: one ingested image → one `seg.v1.augmented` event per variant."""

from __future__ import annotations

import asyncio
import time

from maskline.contracts import formats, seg_v1
from maskline.contracts.envelope import Envelope, next_event
from maskline.shared import keys, references
from maskline.shared.errors import PermanentError
from maskline.shared.images import transforms
from maskline.shared.images.codec import encode_pixels, load_rgb
from maskline.shared.storage import ObjectStore

SOURCE = "augment"


async def make_variants(
    store: ObjectStore, env: Envelope[seg_v1.SegmentationIngested]
) -> list[Envelope[seg_v1.SegmentationAugmented]]:
    started = time.perf_counter()
    tta = env.data.options.tta
    if tta is None:
        raise PermanentError("augment got a job without TTA options", code="invalid_message")
    # Variants of the working copy (bounded size), not of a possibly huge original.
    work = env.data.work_ref
    image = load_rgb(await references.read(store, work, env.tenant), work.content_type)
    work_height, work_width = env.data.work_size
    chosen = transforms.variants(tta.variants, angle=tta.angle, sigma=tta.blur_sigma)
    events = []
    for index, variant in enumerate(chosen):
        if variant.name == "original":
            ref, height, width = env.data.work_ref, work_height, work_width
        else:
            array = await asyncio.to_thread(transforms.apply, variant, image)
            height, width = array.shape[:2]
            key = keys.variant_image(env.tenant, env.job_id, index, variant.name)
            ref = await store.put(key, await asyncio.to_thread(encode_pixels, array[..., ::-1]), formats.PIXELS)
        data = seg_v1.SegmentationAugmented(
            image=ref,
            width=width,
            height=height,
            original=env.data.full_size_pixels,  # what merge draws the overlay on
            original_width=env.data.width,
            original_height=env.data.height,
            variant=variant,
            index=index,
            count=len(chosen),
            options=env.data.options,
            timings_ms={**env.data.timings_ms, "augment": round((time.perf_counter() - started) * 1000, 2)},
            working_width=env.data.working_width,
            working_height=env.data.working_height,
        )
        events.append(next_event(env, seg_v1.AUGMENTED, SOURCE, data, part=index))
    return events
