"""SAM-format versions: the image encoder once per image, the prompt decoder once per prompt, both
on Triton, fed as segment-anything's `SamPredictor` and its ONNX example feed them.

Coordinates: the prompt's (in the working copy's pixels) scaled as `ResizeLongestSide.apply_coords`
does; a box becomes its two corners (labels 2 and 3); without a box, SAM's padding point (0, 0)
with label -1 is added. The decoder answers mask logits at `orig_im_size` (the working copy's
size): the object is where they are above 0, its predicted quality `iou_predictions`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from maskline.contracts.model_v1 import SAM_DECODER_OUTPUTS, ModelVersion
from maskline.contracts.seg_v1 import Point, PromptedObject
from maskline.services.infer.prompting import iou
from maskline.services.infer.repository import decoder_name, triton_name
from maskline.services.infer.triton import Triton
from maskline.shared.errors import PermanentError
from maskline.shared.images.codec import longest_side_shape, prepare_pixels

#: An earlier answer given to the decoder as `mask_input`: its logits (SAM feeds back its own
#: low-resolution logits; a stored mask is binary, so it becomes a confident +-LOGIT).
PRIOR_LOGIT = 8.0
#: SAM's automatic mask generator: the stability offset, and masks that overlap this much are one.
STABILITY_OFFSET = 1.0
SAME_OBJECT_IOU = 0.7
#: Segment everything with a SAM-format version: at most this many points a side (one decoder call
#: each), and this many calls in flight (each carries the embedding and answers a full-size mask).
MAX_GRID = 16
IN_FLIGHT = 4


@dataclass(frozen=True)
class Decoded:
    mask: NDArray[np.bool_]
    score: float
    stability: float


def point_feeds(prompt: PromptedObject, height: int, width: int, side: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """`point_coords` (1, N, 2) and `point_labels` (1, N) for one object in a (height, width) image."""
    new_h, new_w = longest_side_shape(height, width, side)
    sx, sy = new_w / width, new_h / height
    coords = [(p.x * sx, p.y * sy) for p in prompt.points]
    labels = [float(p.label) for p in prompt.points]
    if prompt.box is not None:
        b = prompt.box
        coords += [(b.x0 * sx, b.y0 * sy), (b.x1 * sx, b.y1 * sy)]
        labels += [2.0, 3.0]
    else:
        coords.append((0.0, 0.0))
        labels.append(-1.0)
    return np.array([coords], np.float32), np.array([labels], np.float32)


def prior_feed(prior: NDArray[np.bool_] | None, side: int, mask_size: tuple[int, int]) -> tuple[NDArray[np.float32], float]:
    """`mask_input` (1, 1, h, w) and `has_mask_input` of an earlier answer at the working size: in
    the encoder's frame (the longer side to `side`, padded), brought to the decoder's mask size."""
    mask_h, mask_w = mask_size
    if prior is None:
        return np.zeros((1, 1, mask_h, mask_w), np.float32), 0.0
    new_h, new_w = longest_side_shape(prior.shape[0], prior.shape[1], side)
    inner = (round(new_h * mask_h / side), round(new_w * mask_w / side))
    small = cv2.resize(prior.astype(np.uint8), (max(1, inner[1]), max(1, inner[0])), interpolation=cv2.INTER_NEAREST) > 0
    logits = np.full((1, 1, mask_h, mask_w), -PRIOR_LOGIT, np.float32)
    logits[0, 0, : small.shape[0], : small.shape[1]][small] = PRIOR_LOGIT
    return logits, 1.0


def decoded(masks: NDArray[np.float32], predicted: NDArray[np.float32], size: tuple[int, int]) -> Decoded:
    """The object (logits above 0), its predicted IoU, and its stability (IoU of the mask at logit
    thresholds +1 and -1, SAM's stability score). A decoder that answers anything else is refused:
    a registered model's fault, never retried."""
    shape_ok = masks.ndim == 4 and masks.shape[:2] == (1, 1) and masks.shape[2:] == size
    if not shape_ok or predicted.size != 1 or not np.isfinite(predicted).all():
        raise PermanentError(
            f"the prompt decoder answered masks {masks.shape} and IoU {predicted.shape}, not one {size} mask and a finite IoU",
            code="bad_model_output",
        )
    logits = masks[0, 0]
    loose, tight = logits > -STABILITY_OFFSET, logits > STABILITY_OFFSET
    score = float(np.clip(predicted.reshape(-1)[0], 0.0, 1.0))
    return Decoded(mask=logits > 0, score=score, stability=round(iou(tight, loose), 4))


def distinct(
    found: list[tuple[Decoded, Point]], min_score: float, min_stability: float, limit: int
) -> list[tuple[Decoded, Point]]:
    """Segment everything's filter: good and stable enough, then the best of each group of masks
    that overlap by more than `SAME_OBJECT_IOU` (SAM's generator compares the masks' boxes; the
    masks themselves are compared here, a stricter test of the same overlap)."""
    kept: list[tuple[Decoded, Point]] = []
    for answer, point in sorted(found, key=lambda f: -f[0].score):
        if answer.score < min_score or answer.stability < min_stability or not answer.mask.any():
            continue
        if all(iou(answer.mask, other.mask) <= SAME_OBJECT_IOU for other, _ in kept):
            kept.append((answer, point))
        if len(kept) == limit:
            break
    return kept


class SamPrompts:
    """A SAM-format version's two halves on Triton."""

    def __init__(self, triton: Triton) -> None:
        self.triton = triton
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)

    async def embed(self, model: ModelVersion, pixels: bytes, content_type: str) -> NDArray[np.float32]:
        assert model.decoder is not None
        prepared = await asyncio.to_thread(prepare_pixels, pixels, content_type, model.input_size, model.preprocessing)
        async with self.triton.using(model):  # not unloaded by the memory budget meanwhile
            await self.triton.ensure_loaded(model)
            answer = await self.triton.run_named(
                model, triton_name(model), {model.decoder.encoder_input: prepared.batch}, [model.decoder.encoder_output]
            )
        return answer[model.decoder.encoder_output]

    async def decode(
        self,
        model: ModelVersion,
        embedding: NDArray[Any],
        prompt: PromptedObject,
        size: tuple[int, int],
        prior: NDArray[np.bool_] | None = None,
    ) -> Decoded:
        """One object's mask at `size` (height, width: the working copy's), prompt in its pixels."""
        assert model.decoder is not None
        side = max(model.input_size)
        coords, labels = point_feeds(prompt, *size, side)
        mask_input, has_mask = prior_feed(prior, side, model.decoder.mask_input_size)
        feeds = {
            "image_embeddings": embedding.astype(np.float32, copy=False),
            "point_coords": coords,
            "point_labels": labels,
            "mask_input": mask_input,
            "has_mask_input": np.array([has_mask], np.float32),
            "orig_im_size": np.array(size, np.float32),
        }
        async with self.triton.using(model):
            await self.triton.ensure_loaded(model)  # a kept embedding outlives a Triton restart
            async with self._in_flight:
                answer = await self.triton.run_named(model, decoder_name(model), feeds, list(SAM_DECODER_OUTPUTS[:2]))
        return await asyncio.to_thread(decoded, answer["masks"], answer["iou_predictions"], size)
