"""Dataset expansion: every image (and mask) of a dataset prefix in all chosen variants, plus a manifest.

Idempotent and resumable: output keys are deterministic, and an output whose image is already
stored is skipped (the mask is written before its image, so an image implies its mask).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from maskline.contracts import dataset_v1
from maskline.contracts.envelope import Envelope, next_event
from maskline.shared import keys
from maskline.shared.errors import PermanentError
from maskline.shared.images import transforms
from maskline.shared.images.codec import decode_mask, decode_rgb, encode_png
from maskline.shared.storage import ObjectStore

SOURCE = "augment"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
Publish = Callable[[Envelope[Any]], Awaitable[None]]


async def expand(
    store: ObjectStore, env: Envelope[dataset_v1.DatasetExpandRequested], publish: Publish, progress_every: int = 10
) -> list[Envelope[dataset_v1.DatasetExpanded]]:
    request = env.data
    if request.source == request.target:
        raise PermanentError("target must differ from source", code="invalid_request")
    images = [k for k in await store.list(keys.dataset_part(request.source, keys.IMAGES)) if k.lower().endswith(IMAGE_SUFFIXES)]
    if not images:
        raise PermanentError(f"no images under {keys.dataset_part(request.source, keys.IMAGES)}", code="empty_dataset")
    masks = set(await store.list(keys.dataset_part(request.source, keys.MASKS)))
    chosen = transforms.variants(request.variants, angle=request.angle, sigma=request.blur_sigma)
    entries: list[dataset_v1.ManifestEntry] = []
    written = skipped = 0
    for done, key in enumerate(images, 1):
        name = keys.stem_of(key)
        mask_key = keys.dataset_mask_of(request.source, key)
        has_mask = mask_key in masks
        image = mask = None
        for variant in chosen:
            out_image = keys.expanded_file(request.target, keys.IMAGES, name, variant.name)
            out_mask = keys.expanded_file(request.target, keys.MASKS, name, variant.name) if has_mask else None
            entries.append(dataset_v1.ManifestEntry(source=key, variant=variant, image=out_image, mask=out_mask))
            if await store.exists(out_image):
                skipped += 1
                continue
            if image is None:
                try:
                    image = decode_rgb(await store.get(key))
                    mask = decode_mask(await store.get(mask_key)) if has_mask else None
                except ValueError as exc:
                    raise PermanentError(f"{key}: {exc}", code="invalid_image") from exc
            if out_mask is not None and mask is not None:
                if mask.shape != image.shape[:2]:
                    raise PermanentError(f"{mask_key} is {mask.shape} but its image is {image.shape[:2]}", code="invalid_mask")
                labels = transforms.apply(variant, mask, nearest=True)
                await store.put(out_mask, await asyncio.to_thread(encode_png, labels), "image/png")
            pixels = await asyncio.to_thread(transforms.apply, variant, image)
            await store.put(out_image, await asyncio.to_thread(encode_png, pixels), "image/png")
            written += 1
        if done % progress_every == 0 or done == len(images):
            progress = dataset_v1.DatasetExpandProgressed(done=done, total=len(images), written=written, skipped=skipped)
            await publish(next_event(env, dataset_v1.EXPAND_PROGRESSED, SOURCE, progress, part=done))
    manifest = dataset_v1.DatasetManifest(source=request.source, target=request.target, variants=tuple(chosen), entries=entries)
    ref = await store.put(keys.dataset_manifest(request.target), msgspec.json.encode(manifest), "application/json")
    result = dataset_v1.DatasetExpanded(
        manifest=ref, images=len(images), outputs=len(entries), written=written, skipped=skipped, variants=tuple(chosen)
    )
    return [next_event(env, dataset_v1.EXPANDED, SOURCE, result)]
