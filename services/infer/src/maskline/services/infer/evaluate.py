"""Evaluation jobs: `model.v1.evaluate.requested` → run a version on every labelled image of a
dataset through serving (the same preprocessing and Triton model as live requests) → per-class IoU,
mIoU, pixel accuracy, boundary F-score, latency → `model.v1.evaluated`, the result stored as JSON.

Runs in infer because that is where the served model is: the numbers are the served model's, for
any precision. Its consumer takes one job at a time, so an evaluation never takes more than one of
infer's slots away from live traffic.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope, next_event, now
from maskline.contracts.model_v1 import ClassScore, Evaluated, EvaluateRequested, Evaluation, VersionRef
from maskline.contracts.subjects import INFER as NAME
from maskline.services.infer.scoring import Scoreboard, mean, upsample
from maskline.shared import keys
from maskline.shared.datasets.labelled import ContentHash, labelled_pairs
from maskline.shared.errors import PermanentError
from maskline.shared.images import statistics
from maskline.shared.images.codec import decode_bgr, decode_mask, encode_png
from maskline.shared.models.registry import ModelNotFound
from maskline.shared.operations import quality
from maskline.shared.version import CODE_VERSION

if TYPE_CHECKING:
    from maskline.services.infer.service import Infer

#: A progress event after this many images (and after the last).
PROGRESS_EVERY = 10


class Evaluator:
    def __init__(self, infer: Infer) -> None:
        self.infer = infer
        self.store = infer.runtime.store

    async def handle(self, env: Envelope[EvaluateRequested]) -> list[Envelope[Any]]:
        d = env.data
        try:
            model = await self.infer.access.ref(env.tenant, d.model)
        except ModelNotFound as exc:
            raise PermanentError(str(exc), code="model_not_found") from exc
        pairs = await labelled_pairs(self.store, d.dataset, d.max_images)
        if not pairs:
            raise PermanentError(f"{d.dataset} has no image with a mask (masks/<image stem>.png)", code="no_labelled_images")
        board = Scoreboard(classes=len(model.labels), tolerance=d.boundary_tolerance)
        latencies: list[float] = []
        digest = ContentHash()
        predictions: list[tuple[str, bytes]] = []
        samples: list[dict[str, float]] = []  # each image's watched features: the drift reference
        for index, (image_key, mask_key) in enumerate(pairs, start=1):
            image, mask_bytes = await self.store.get(image_key), await self.store.get(mask_key)
            filename = image_key.rsplit("/", 1)[-1]
            digest.add(image_key, image, mask_bytes)
            try:
                truth = decode_mask(mask_bytes)
            except ValueError as exc:
                raise PermanentError(f"{mask_key}: {exc}", code="invalid_mask") from exc
            started = time.perf_counter()
            scores = await self.infer.scores(model, image)
            latencies.append((time.perf_counter() - started) * 1000)
            samples.append(await asyncio.to_thread(_features, scores, image))
            predicted = upsample(scores, (truth.shape[0], truth.shape[1]))
            board.add(truth, predicted)
            predictions.append((filename, encode_png(predicted.astype(np.uint8))))
            if index % PROGRESS_EVERY == 0 or index == len(pairs):
                progress = model_v1.QuantizeProgressed(stage="evaluate", done=index, total=len(pairs))
                await self.infer.runtime.bus.publish(next_event(env, model_v1.EVALUATE_PROGRESSED, NAME, progress, part=index))
        ious, f1s = board.ious(), board.boundary_f1s()
        evaluation = Evaluation(
            model=VersionRef(model.name, model.version, model.owner),
            precision=model.precision,
            dataset=d.dataset,
            dataset_sha256=digest.hexdigest(),
            images=len(pairs),
            miou=round(mean(ious), 6),
            pixel_accuracy=round(board.pixel_accuracy(), 6),
            boundary_f1=round(mean(f1s), 6),
            classes=tuple(
                ClassScore(label=label, iou=_round(iou), boundary_f1=_round(f1), pixels=pixels)
                for label, iou, f1, pixels in zip(model.labels, ious, f1s, board.pixels(), strict=True)
            ),
            latency_ms=round(float(np.median(latencies)), 2),
            latency_p90_ms=round(float(np.percentile(latencies, 90)), 2),
            boundary_tolerance=d.boundary_tolerance,
            code_version=CODE_VERSION,
            job_id=env.job_id,
            created=now(),
            reference=quality.reference_of(samples),
        )
        for filename, png in predictions:  # what `compare` draws the difference of two versions from
            mask_key = keys.evaluation_mask(
                env.tenant, model.owner, model.name, model.version, evaluation.dataset_sha256, filename
            )
            await self.store.put(mask_key, png, "image/png")
        key = keys.evaluation(env.tenant, model.owner, model.name, model.version, evaluation.dataset_sha256)
        ref = await self.store.put(key, msgspec.json.encode(evaluation), "application/json")
        return [next_event(env, model_v1.EVALUATED, NAME, Evaluated(evaluation=evaluation, result=ref))]


def _features(scores: NDArray[np.floating[Any]], image: bytes) -> dict[str, float]:
    """An evaluation image's values of the features live jobs are watched by, measured as live jobs
    measure them (`seg_v1.Confidence` of the probabilities, brightness and size of the image)."""
    bgr = decode_bgr(image)
    height, width = bgr.shape[:2]
    return quality.features(statistics.confidence_of(scores), statistics.brightness(bgr), width, height)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
