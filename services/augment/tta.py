"""Test-time augmentation: one ingested image → one `seg.v1.augmented` event per variant."""

from __future__ import annotations

import asyncio
import time

from maskline.contracts import seg_v1
from maskline.contracts.envelope import Envelope, next_event
from maskline.shared import transforms
from maskline.shared.errors import PermanentError, RetryableError
from maskline.shared.images import decode_rgb, encode_png
from maskline.shared.storage import ObjectNotFound, ObjectStore, StorageError

SOURCE = "augment"


async def make_variants(
    store: ObjectStore, env: Envelope[seg_v1.SegmentationIngested]
) -> list[Envelope[seg_v1.SegmentationAugmented]]:
    started = time.perf_counter()
    tta = env.data.options.tta
    if tta is None:
        raise PermanentError("augment got a job without TTA options", code="invalid_message")
    try:
        image = decode_rgb(await store.get(env.data.image.key))
    except ObjectNotFound as exc:
        raise PermanentError(f"ingested image {env.data.image.key} is missing", code="input_missing") from exc
    except StorageError as exc:
        raise RetryableError(str(exc)) from exc
    chosen = transforms.variants(tta.variants, angle=tta.angle, sigma=tta.blur_sigma)
    events = []
    for index, variant in enumerate(chosen):
        if variant.name == "original":
            ref, height, width = env.data.image, env.data.height, env.data.width
        else:
            array = await asyncio.to_thread(transforms.apply, variant, image)
            height, width = array.shape[:2]
            key = f"inputs/{env.tenant}/{env.job_id}/variants/{index}-{variant.name}.png"
            try:
                ref = await store.put(key, await asyncio.to_thread(encode_png, array), "image/png")
            except StorageError as exc:
                raise RetryableError(str(exc)) from exc
        data = seg_v1.SegmentationAugmented(
            image=ref,
            width=width,
            height=height,
            original=env.data.image,
            original_width=env.data.width,
            original_height=env.data.height,
            variant=variant,
            index=index,
            count=len(chosen),
            options=env.data.options,
            timings_ms={**env.data.timings_ms, "augment": round((time.perf_counter() - started) * 1000, 2)},
        )
        events.append(next_event(env, seg_v1.AUGMENTED, SOURCE, data, part=index))
    return events
