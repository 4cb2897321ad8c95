"""A prompted job (`options.prompts`): the image's embedding (made once, kept), then one mask per
prompted object, or every object, stored as a label map for merge."""

from __future__ import annotations

import asyncio
import io
import time
import warnings
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from maskline.contracts import formats, seg_v1
from maskline.contracts.common_v1 import ModelRef
from maskline.contracts.envelope import Envelope
from maskline.contracts.model_v1 import ModelVersion
from maskline.contracts.seg_v1 import ObjectFound, PriorMask, PromptedObject, Prompts
from maskline.services.infer import prompting, sam
from maskline.services.infer.embeddings import Embedding, EmbeddingKey, Embeddings
from maskline.shared import keys, references
from maskline.shared.errors import PermanentError
from maskline.shared.images.codec import decode_mask, encode_label_map, load_rgb

if TYPE_CHECKING:
    from maskline.services.infer.service import Infer


def model_ref(m: ModelVersion, alias: str | None, canary: bool) -> ModelRef:
    """What a job's events say ran it."""
    return ModelRef(name=m.name, version=m.version, precision=m.precision, owner=m.owner, alias=alias, canary=canary)


def _version_key(model: ModelVersion) -> str:
    return f"{model.owner}/{model.name}/{model.version}/{model.precision}"


def _label_map(masks: list[NDArray[np.bool_]], height: int, width: int) -> NDArray[np.uint8]:
    """Object index per pixel; where objects overlap, the earlier one (SAM's order: the caller's)."""
    labels = np.zeros((height, width), np.uint8)
    for index in range(len(masks), 0, -1):
        labels[masks[index - 1]] = index
    return labels


class PromptedJobs:
    def __init__(self, infer: Infer, embeddings: Embeddings) -> None:
        self.infer = infer
        self.embeddings = embeddings
        self.sam = sam.SamPrompts(infer.triton)

    async def handle(self, env: Envelope[seg_v1.SegmentationIngested]) -> seg_v1.SegmentationInferred:
        d = env.data
        prompts = d.options.prompts
        assert prompts is not None
        started = time.perf_counter()
        target = await self.infer.target(env.tenant, d.options)
        model, canary = target.pick(env.job_id)
        work_h, work_w = d.work_size
        timings: dict[str, float] = {}  # the encoder's only when it ran for this job
        key = EmbeddingKey(env.tenant, _version_key(model), d.work_ref.sha256)
        embedding, _ = await self.embeddings.get(key, lambda: self._embed(env.tenant, model, d, timings))
        prior = await self._prior(prompts.mask, env.tenant, work_h, work_w) if prompts.mask else None
        decoder_started = time.perf_counter()
        if model.decoder is not None:
            masks, objects = await self._sam(model, embedding, prompts, prior, d)
        else:
            masks, objects = await asyncio.to_thread(self._bundled, embedding, model.labels, prompts, prior, d)
        timings["decoder"] = round((time.perf_counter() - decoder_started) * 1000, 2)
        label_map = _label_map(masks, work_h, work_w)
        ref = await self.infer.runtime.store.put(
            keys.prediction(env.tenant, env.job_id), encode_label_map(label_map), formats.LABEL_MAP
        )
        timings["infer"] = round((time.perf_counter() - started) * 1000, 2)
        alias = target.alias.name if target.alias else None
        return seg_v1.SegmentationInferred(
            image=d.full_size_pixels,
            width=d.width,
            height=d.height,
            prediction=ref,
            model=model_ref(model, alias, canary),
            labels=seg_v1.object_labels(len(objects)),
            options=d.options,
            timings_ms={**d.timings_ms, **timings},
            objects=tuple(objects),
        )

    async def _embed(
        self, tenant: str, model: ModelVersion, d: seg_v1.SegmentationIngested, timings: dict[str, float]
    ) -> Embedding:
        """What the image costs once: a SAM pair's image encoder, or (bundled path) the named
        model's probabilities at the working size and the pixels GrabCut reads."""
        started = time.perf_counter()
        pixels = await references.read(self.infer.runtime.store, d.work_ref, tenant)
        features: NDArray[Any]
        if model.decoder is not None:
            features = await self.sam.embed(model, pixels, d.work_ref.content_type)
            image = np.zeros((0, 0, 3), np.uint8)
        else:
            probs, triton_ms = await self.infer.timed_scores(model, pixels, d.work_ref.content_type)
            image = await asyncio.to_thread(load_rgb, pixels, d.work_ref.content_type)
            features = await asyncio.to_thread(_at_size, probs, *d.work_size)
            timings["triton"] = round(triton_ms, 2)
        timings["encoder"] = round((time.perf_counter() - started) * 1000, 2)
        return Embedding(image=image, features=features)

    def _bundled(
        self,
        embedding: Embedding,
        labels: tuple[str, ...],
        prompts: Prompts,
        prior: NDArray[np.bool_] | None,
        d: seg_v1.SegmentationIngested,
    ) -> tuple[list[NDArray[np.bool_]], list[ObjectFound]]:
        """Masks at the working size, and what each is; prompt coordinates come in the uploaded
        image's pixels and go back out in them."""
        work_h, work_w = d.work_size
        sx, sy = work_w / d.width, work_h / d.height
        probs = embedding.features.astype(np.float32)
        if prompts.everything:
            points = prompting.grid(prompts.points_per_side, work_h, work_w)
            found = prompting.segment_everything(
                probs, labels, points, prompts.min_score, prompts.min_stability, seg_v1.MAX_EVERYTHING_OBJECTS
            )
            return [f.mask for f in found], [
                ObjectFound(
                    index=i,
                    score=f.score,
                    stability=f.stability,
                    label=f.label,
                    point=prompting.in_upload(f.point, sx, sy),
                )
                for i, f in enumerate(found, start=1)
            ]
        masks, objects = [], []
        for i, prompt in enumerate(prompts.objects, start=1):
            answer = prompting.segment_object(embedding.image, probs, labels, prompting.scaled(prompt, sx, sy), prior)
            masks.append(answer.mask)
            objects.append(ObjectFound(index=i, score=answer.score, stability=answer.stability, label=answer.label))
        return masks, objects

    async def _sam(
        self,
        model: ModelVersion,
        embedding: Embedding,
        prompts: Prompts,
        prior: NDArray[np.bool_] | None,
        d: seg_v1.SegmentationIngested,
    ) -> tuple[list[NDArray[np.bool_]], list[ObjectFound]]:
        """A SAM-format version's decoder once per object, or once per grid point (everything)."""
        size = d.work_size
        sx, sy = size[1] / d.width, size[0] / d.height
        if prompts.everything:
            points = prompting.grid(min(prompts.points_per_side, sam.MAX_GRID), *size)
            answers = await asyncio.gather(
                *(self.sam.decode(model, embedding.features, PromptedObject(points=(p,)), size) for p in points)
            )
            found = list(zip(answers, points, strict=True))
            kept = await asyncio.to_thread(
                sam.distinct, found, prompts.min_score, prompts.min_stability, seg_v1.MAX_EVERYTHING_OBJECTS
            )
            return [a.mask for a, _ in kept], [
                ObjectFound(index=i, score=round(a.score, 4), stability=a.stability, point=prompting.in_upload(p, sx, sy))
                for i, (a, p) in enumerate(kept, start=1)
            ]
        answers = await asyncio.gather(
            *(self.sam.decode(model, embedding.features, prompting.scaled(o, sx, sy), size, prior) for o in prompts.objects)
        )
        objects = [ObjectFound(index=i, score=round(a.score, 4), stability=a.stability) for i, a in enumerate(answers, start=1)]
        return [a.mask for a in answers], objects

    async def _prior(self, mask: PriorMask, tenant: str, height: int, width: int) -> NDArray[np.bool_]:
        """The earlier answer's pixels of the object, at the working size."""
        data = await references.read(self.infer.runtime.store, mask.ref, tenant)
        return await asyncio.to_thread(prior_at, data, mask.value, height, width)


#: A prior mask larger than this is refused before it is decoded (a small PNG can hold a huge one).
MAX_PRIOR_PIXELS = 50_000_000


def prior_at(data: bytes, value: int, height: int, width: int) -> NDArray[np.bool_]:
    """An 8-bit one-channel mask PNG's object pixels (`value`, or any nonzero), at (height, width)."""
    try:
        with warnings.catch_warnings():  # its size is checked here, against a lower limit than Pillow's
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                size, mode = header.size, header.mode
        if size[0] * size[1] > MAX_PRIOR_PIXELS:
            raise PermanentError(
                f"the prior mask is {size[0]}x{size[1]}: over {MAX_PRIOR_PIXELS} pixels", code="invalid_prompt_mask"
            )
        if mode not in ("L", "P", "1"):
            raise PermanentError(
                f"the prior mask is {mode}: one 8-bit channel is expected (a mask PNG)", code="invalid_prompt_mask"
            )
        pixels = decode_mask(data)
        resized = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_NEAREST)
    except (OSError, ValueError, cv2.error, Image.DecompressionBombError) as exc:
        raise PermanentError(f"the prior mask is not a mask image: {exc}", code="invalid_prompt_mask") from exc
    return np.asarray(resized == value if value else resized > 0)


def _at_size(probs: NDArray[np.floating[Any]], height: int, width: int) -> NDArray[np.float16]:
    """(C, h, w) model probabilities brought to the working copy's size, as float16 (half the memory)."""
    if probs.shape[1:] == (height, width):
        return np.asarray(probs, dtype=np.float16)
    hwc = np.ascontiguousarray(probs.astype(np.float32).transpose(1, 2, 0))
    resized = cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:
        resized = resized[..., None]
    return np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float16)
