"""Merge: `seg.v1.inferred` → (fuse TTA variants) → mask PNG, overlay PNG, regions JSON → `seg.v1.completed`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
import msgspec
import numpy as np
from numpy.typing import NDArray

from maskline.contracts import formats, seg_v1
from maskline.contracts.common_v1 import ObjectRef, Variant
from maskline.contracts.envelope import Envelope, next_event
from maskline.contracts.http_v1 import RegionsDocument
from maskline.services.merge import render
from maskline.services.merge.collect import VariantCollector
from maskline.services.merge.regions import find_regions
from maskline.shared import keys, references
from maskline.shared.errors import PermanentError
from maskline.shared.images import statistics, transforms
from maskline.shared.images.codec import decode_label_map, decode_probabilities, load_bgr
from maskline.shared.jobs.fence import Fences, new_attempt, segmentation_fence
from maskline.shared.service.consumer import ConsumerSpec, delivery
from maskline.shared.service.runtime import Runtime

NAME = "merge"
T = TypeVar("T")
FILENAMES = {"mask": "mask.png", "overlay": "overlay.png", "regions": "regions.json"}
PARALLEL_PIXELS = 4_000_000


#: The overlay of a large image renders here, beside the rest of its job (made once: a pool per job
#: cost more than a small job's whole overlay).
OVERLAY_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="render")


class _Inline:
    """`submit` that runs the call at once in the calling thread (a small image's overlay)."""

    @staticmethod
    def submit(fn: Callable[..., T], /, *args: Any) -> Future[T]:
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:
            done.set_exception(exc)
        return done


_INLINE = _Inline()


@dataclass(frozen=True)
class Rendered:
    files: dict[str, tuple[bytes, str]]
    regions: int
    confidence: seg_v1.Confidence | None
    objects: tuple[seg_v1.ObjectFound, ...] = ()


def objects_at(
    label_map: NDArray[np.uint8], objects: tuple[seg_v1.ObjectFound, ...], width: int, height: int
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """A prompted job's mask at the image's own size (nearest: an object index is not blended) and
    each pixel's object score (what a region's score averages)."""
    mask = label_map
    if label_map.shape != (height, width):
        mask = np.asarray(cv2.resize(label_map, (width, height), interpolation=cv2.INTER_NEAREST))
    scores = np.ones(256, np.float32)
    for found in objects:
        scores[found.index] = found.score
    return mask, scores[mask]


def measured_objects(mask: NDArray[np.uint8], objects: tuple[seg_v1.ObjectFound, ...]) -> tuple[seg_v1.ObjectFound, ...]:
    """Each object with its area and box at the image's own size: one pass over the image, then
    per object over the object pixels only."""
    ys, xs = np.nonzero(mask)
    values = mask[ys, xs]
    measured = []
    for found in objects:
        mine = values == found.index
        oy, ox = ys[mine], xs[mine]
        box = (int(ox.min()), int(oy.min()), int(ox.max() - ox.min() + 1), int(oy.max() - oy.min() + 1)) if ox.size else None
        measured.append(msgspec.structs.replace(found, area=int(ox.size), bbox=box))
    return tuple(measured)


def fuse_variants(parts: list[tuple[seg_v1.SegmentationInferred, bytes]]) -> NDArray[np.float32]:
    """Each variant's probabilities, resized to the variant's geometry, mapped back and fused — at
    the working size the variants were made from, never at a possibly huge original size."""
    first = parts[0][0]
    shape = (first.working_height, first.working_width) if first.working_width else (first.height, first.width)
    probs, valid = [], []
    for inferred, npy in parts:
        variant = inferred.variant or Variant(name="original")
        height, width = transforms.variant_shape(variant, shape)
        probs.append(np.asarray(transforms.invert(variant, render.upsample(decode_probabilities(npy), width, height), shape)))
        valid.append(transforms.valid_region(variant, shape))
    fusion = first.options.tta.fusion if first.options.tta else "mean"
    return transforms.fuse(probs, valid, fusion)


def _overlay_png(image: Future[NDArray[np.uint8]], mask: NDArray[np.uint8], classes: int, alpha: float) -> bytes:
    tinted = render.overlay_bgr(image.result(), mask, classes, alpha)
    return render.overlay_png(tinted)


def render_outputs(
    job_id: str,
    data: seg_v1.SegmentationInferred,
    image_bytes: bytes,
    prediction: NDArray[np.float32] | NDArray[np.uint8],
    variants: tuple[Variant, ...],
) -> Rendered:
    """`prediction` at any size (model output or fused working size): outputs at the image's own
    size. It is class probabilities (H, W, C), or a prompted job's label map (H, W; `data.objects`
    say what each value is). `image_bytes`: the image at its own size, as `data.image` names it
    (pixels read as they are, an encoded image decoded).

    The overlay (decode the image, blend, encode: the long path on a large image) runs in a second
    thread beside the mask, its PNG and the regions; OpenCV releases the GIL, so on two cores a
    36-megapixel job renders in about the time of the overlay alone. A small image renders in the
    calling thread: handing it to another costs more than it saves.
    """
    outputs = data.options.outputs
    files: dict[str, tuple[bytes, str]] = {}
    pool = OVERLAY_THREADS if data.width * data.height > PARALLEL_PIXELS else _INLINE
    # OpenCV's own order end to end: no channel-swap copies of a large image.
    image = pool.submit(load_bgr, image_bytes, data.image.content_type) if "overlay" in outputs else None
    prompted = prediction.dtype == np.uint8  # a label map
    if prompted:
        mask, score = objects_at(prediction.astype(np.uint8, copy=False), data.objects, data.width, data.height)
    else:
        mask, score = render.mask_at(prediction.astype(np.float32, copy=False), data.width, data.height)
    overlay = None
    if image is not None:
        overlay = pool.submit(_overlay_png, image, mask, len(data.labels), data.options.overlay_alpha)
    if "mask" in outputs:
        files["mask"] = (render.png(mask), "image/png")
    regions = find_regions(mask, score, data.labels, data.options.min_region_area)
    # A prompted job's certainty is per object (its score): no whole-image confidence is claimed.
    confidence = None if prompted else statistics.confidence(score)
    objects = measured_objects(mask, data.objects) if prompted else ()
    if "regions" in outputs:
        doc = RegionsDocument(
            job_id=job_id,
            image={"width": data.width, "height": data.height},
            model=data.model,
            labels=data.labels,
            regions=regions,
            timings_ms=data.timings_ms,
            variants=variants,
            confidence=confidence,
            objects=objects,
        )
        files["regions"] = (msgspec.json.encode(doc), "application/json")
    if overlay is not None:
        files["overlay"] = (overlay.result(), "image/png")
    ordered: dict[str, tuple[bytes, str]] = {name: files[name] for name in ("mask", "overlay", "regions") if name in files}
    return Rendered(files=ordered, regions=len(regions), confidence=confidence, objects=objects)


class Merge:
    def __init__(self, runtime: Runtime, collector: VariantCollector, fences: Fences) -> None:
        self.runtime = runtime
        self.collector = collector
        self.fences = fences

    async def handle(self, env: Envelope[seg_v1.SegmentationInferred]) -> list[Envelope[seg_v1.SegmentationCompleted]]:
        """Render the job's outputs under a fresh attempt and claim the job's completion: exactly one
        attempt's outputs and one `seg.v1.completed` stand, however many workers get here."""
        started = time.perf_counter()
        store = self.runtime.store
        data = env.data
        fence = segmentation_fence(env.tenant, env.job_id)
        # A redelivery may find the job completed or cancelled already: no need to render it again. A
        # first delivery rarely does (a cancel): the claim below settles that case without the read.
        if delivery.get() > 1 and await self.fences.decided(fence):
            return []
        if data.variant is None:
            parts = [data]
        else:
            collected = await self.collector.record(env.tenant, env.job_id, data)
            if collected is None:
                return []  # more variants to come; this one is durably recorded
            parts = collected
        png, *npys = await asyncio.gather(
            references.read(store, data.image, env.tenant), *(references.read(store, p.prediction, env.tenant) for p in parts)
        )
        try:
            if data.prediction.content_type == formats.LABEL_MAP:
                probs: NDArray[Any] = decode_label_map(npys[0])
            elif data.variant is None:
                probs = np.ascontiguousarray(decode_probabilities(npys[0]).transpose(1, 2, 0))
            else:
                probs = await asyncio.to_thread(fuse_variants, list(zip(parts, npys, strict=True)))
            variants = tuple(p.variant for p in parts if p.variant is not None)
            timings = {k: v for p in parts for k, v in p.timings_ms.items()}
            data = msgspec.structs.replace(data, timings_ms=timings)
            rendered = await asyncio.to_thread(render_outputs, env.job_id, data, png, probs, variants)
        except (ValueError, OSError) as exc:
            raise PermanentError(f"cannot render prediction: {exc}", code="bad_prediction") from exc
        attempt = new_attempt()
        stored = await asyncio.gather(  # side by side: each waits for its own fsync
            *(
                store.put(keys.artifact(env.tenant, env.job_id, FILENAMES[name], attempt), body, kind)
                for name, (body, kind) in rendered.files.items()
            )
        )
        artifacts: dict[str, ObjectRef] = dict(zip(rendered.files, stored, strict=True))

        async def lost() -> None:  # another attempt's outputs stand: ours go
            for ref in artifacts.values():
                await store.delete(ref.key)

        completed = seg_v1.SegmentationCompleted(
            artifacts=artifacts,
            model=data.model,
            width=data.width,
            height=data.height,
            regions=rendered.regions,
            confidence=rendered.confidence,
            objects=rendered.objects,
            timings_ms={**timings, "merge": round((time.perf_counter() - started) * 1000, 2)},
            variants=variants,
            brightness=parts[0].brightness,
        )
        await self.fences.finish(fence, attempt, next_event(env, seg_v1.COMPLETED, NAME, completed), lost)
        return []  # published through the fence


async def setup(runtime: Runtime) -> list[Awaitable[None]]:
    collector = await VariantCollector.opened(runtime.bus.js)
    fences = await Fences.opened(runtime.bus.js, runtime.bus)
    merge = Merge(runtime, collector, fences)
    runtime.consume(
        ConsumerSpec.for_subject(
            NAME, seg_v1.INFERRED, merge.handle, failure=seg_v1.FAILED, concurrency=runtime.settings.concurrency
        )
    )
    return []
