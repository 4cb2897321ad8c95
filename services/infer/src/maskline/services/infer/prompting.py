"""The bundled promptable path: a box or points on an image → that object's mask, without SAM weights.

What the image costs once (its "embedding", cached by `embeddings.py`): the named model's class
probabilities over the working copy, computed on Triton like any job's. What each prompt costs:
OpenCV's GrabCut on the prompt's crop, seeded by the prompt (outside the box: background; the
points: sure foreground or background) and by the model's probabilities for the class the prompt
points at (probable foreground where the model sees it). Where the model knows the object (a shape
for the starter, a person for the person model) its probabilities carry the mask; where it does
not, GrabCut's colour models alone do. Measured in docs/prompts.md.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from maskline.contracts.seg_v1 import Box, Point, PromptedObject

#: GrabCut runs on the prompt's crop brought to at most this many pixels a side: its cost grows
#: with the pixels. Where the model seeds it, most pixels are settled and 160 costs ~20 ms; colour
#: alone settles slowly (a box across several objects took 170 ms at 160, 60 at 96), so less
#: (docs/benchmarks.md, promptable segmentation).
WORK_SIDE = 160
COLOUR_SIDE = 96
#: Iterations before the stability check, and the one after it.
ITERATIONS = 2
#: Share of the box's larger side added around it, so GrabCut sees background on every side.
MARGIN = 0.1
#: A point seeds a disc of this share of the image's larger side (at least 2 px).
POINT_RADIUS = 0.01
#: Probability above which the model's class counts as probable foreground.
PRIOR_ABOVE = 0.5
#: The model knows the prompted object when its mask of the class covers at least this share of the box.
MODEL_SHARE = 0.2
#: Probability above which (or below one minus which) the model's class is taken as sure.
SURE_ABOVE = 0.99
#: GrabCut's rectangle, unused when it starts from a mask.
NO_RECT = (0, 0, 0, 0)


@dataclass(frozen=True)
class ObjectMask:
    """One prompted object: its mask over the whole (working) image and its predicted quality."""

    mask: NDArray[np.bool_]
    score: float
    """stability (GrabCut's mask after one more iteration, as IoU) x agreement with the model
    (IoU with the model's own mask of the class inside the box; 1 where the model sees nothing)."""
    stability: float
    label: str | None
    """The model's class the prompt points at, when the model sees one there."""


def iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    union = int(np.count_nonzero(a | b))
    return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union


def _region(prompt: PromptedObject, probs: NDArray[np.floating[Any]], height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends, of the pixels the prompt is about: its box; for points
    alone, the extent of the model's own object under them, else a window reaching a quarter of
    the image's larger side beyond them each way."""
    if prompt.box is not None:
        b = prompt.box
        x0, y0, x1, y1 = b.x0, b.y0, b.x1, b.y1
    else:
        fg = [p for p in prompt.points if p.label == 1]
        xs, ys = [p.x for p in fg], [p.y for p in fg]
        half = max(height, width) / 4
        x0, y0, x1, y1 = min(xs) - half, min(ys) - half, max(xs) + half, max(ys) + half
        known = _model_extent(probs, fg)
        if known is not None:
            x0, y0, x1, y1 = known
    left, top = int(np.clip(np.floor(x0), 0, width - 1)), int(np.clip(np.floor(y0), 0, height - 1))
    right, bottom = int(np.clip(np.ceil(x1), left + 1, width)), int(np.clip(np.ceil(y1), top + 1, height))
    return left, top, right, bottom


def _model_extent(probs: NDArray[np.floating[Any]], points: list[Point]) -> tuple[float, float, float, float] | None:
    """The box around the model's objects (connected parts of its winning class) under the points."""
    height, width = probs.shape[1:]
    winner = probs.argmax(axis=0)
    boxes = []
    for p in points:
        x, y = int(np.clip(p.x, 0, width - 1)), int(np.clip(p.y, 0, height - 1))
        if winner[y, x] == 0:
            continue
        part = _part_at(winner == winner[y, x], x, y)
        ys, xs = np.nonzero(part)
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    if not boxes:
        return None
    corners = np.array(boxes, dtype=np.float64)
    return float(corners[:, 0].min()), float(corners[:, 1].min()), float(corners[:, 2].max()), float(corners[:, 3].max())


def _pointed_class(probs: NDArray[np.floating[Any]], prompt: PromptedObject, region: tuple[int, int, int, int]) -> int:
    """The non-background class the prompt is about: the one most probable under its foreground
    points, else over the box's centre (the middle half), else 0 when the model sees none there."""
    x0, y0, x1, y1 = region
    fg = [p for p in prompt.points if p.label == 1]
    if fg:
        h, w = probs.shape[1:]
        ys = [int(np.clip(p.y, 0, h - 1)) for p in fg]
        xs = [int(np.clip(p.x, 0, w - 1)) for p in fg]
        means = probs[1:, ys, xs].mean(axis=1)
    else:
        qw, qh = (x1 - x0) // 4, (y1 - y0) // 4
        centre = probs[1:, y0 + qh : y1 - qh, x0 + qw : x1 - qw]
        means = centre.reshape(centre.shape[0], -1).mean(axis=1) if centre.size else np.zeros(probs.shape[0] - 1)
    best = int(np.argmax(means))
    return best + 1 if means[best] > PRIOR_ABOVE / 2 else 0


def _disc(seeds: NDArray[np.uint8], point: Point, radius: int, value: int, offset: tuple[int, int], scale: float) -> None:
    x, y = (point.x - offset[0]) * scale, (point.y - offset[1]) * scale
    cv2.circle(seeds, (round(x), round(y)), radius, (value,), thickness=-1)


@dataclass(frozen=True)
class Window:
    """Where one prompt works: its pixels (`inside`: the box, or the window around points) and the
    crop GrabCut sees (those pixels and a margin of background around them)."""

    inside: NDArray[np.bool_]
    region: tuple[int, int, int, int]
    """(x0, y0, x1, y1), exclusive ends, of the pixels the prompt is about (`_region`)."""
    crop: tuple[int, int, int, int]
    """(x0, y0, x1, y1), exclusive ends."""

    def scale(self, side: int) -> float:
        x0, y0, x1, y1 = self.crop
        return min(1.0, side / max(x1 - x0, y1 - y0))

    def cut(self, array: NDArray[Any], scale: float, interpolation: int = cv2.INTER_AREA) -> NDArray[Any]:
        """The crop of a full-size array, brought to `scale`."""
        x0, y0, x1, y1 = self.crop
        part = np.ascontiguousarray(array[y0:y1, x0:x1])
        if scale == 1.0:
            return part
        size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
        return np.asarray(cv2.resize(part, size, interpolation=interpolation))

    def paste(self, small: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """A crop-sized answer back at full size, kept to the prompt's pixels."""
        x0, y0, x1, y1 = self.crop
        full = np.zeros(self.inside.shape, bool)
        full[y0:y1, x0:x1] = cv2.resize(small.astype(np.uint8), (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST) > 0
        return full & self.inside


def _window(prompt: PromptedObject, probs: NDArray[np.floating[Any]], height: int, width: int) -> Window:
    region = _region(prompt, probs, height, width)
    x0, y0, x1, y1 = region
    margin = int(max(x1 - x0, y1 - y0) * MARGIN) + 4
    crop = (max(0, x0 - margin), max(0, y0 - margin), min(width, x1 + margin), min(height, y1 + margin))
    inside = np.zeros((height, width), bool)
    if prompt.box is not None:
        inside[y0:y1, x0:x1] = True
    else:
        inside[crop[1] : crop[3], crop[0] : crop[2]] = True
    return Window(inside=inside, region=region, crop=crop)


def _guide(probs: NDArray[np.floating[Any]], prompt: PromptedObject, window: Window) -> tuple[int, NDArray[np.bool_]]:
    """The model's class the prompt points at and its mask in the window, or (0, empty) when the
    model sees too little of it there to know the object."""
    class_id = _pointed_class(probs, prompt, window.region)
    if class_id:
        model_mask = (probs[class_id] > PRIOR_ABOVE) & window.inside
        if np.count_nonzero(model_mask) >= MODEL_SHARE * np.count_nonzero(window.inside):
            return class_id, model_mask
    return 0, np.zeros(window.inside.shape, bool)


def _seeds(
    window: Window, probs: NDArray[np.floating[Any]], known: int, model_mask: NDArray[np.bool_], prior: NDArray[np.bool_] | None
) -> NDArray[np.uint8]:
    """GrabCut's start at full size. Inside the window: probable foreground where the model (or the
    earlier answer) says so, else probable background, and the model's sure pixels settled; when
    neither knows anything there, all of it probable foreground (GrabCut's own rectangle start),
    and colour decides. Outside: background."""
    inside = window.inside
    guided = bool(known) or prior is not None
    seeds = np.where(inside, cv2.GC_PR_BGD if guided else cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    if known:
        seeds[model_mask] = cv2.GC_PR_FGD
        seeds[(probs[known] > SURE_ABOVE) & inside] = cv2.GC_FGD
        seeds[(probs[known] < 1 - SURE_ABOVE) & inside] = cv2.GC_BGD
    if prior is not None:
        seeds[prior & inside] = cv2.GC_PR_FGD
    return seeds


def _cut(
    image: NDArray[np.uint8], seeds: NDArray[np.uint8], prompt: PromptedObject, window: Window, side: int
) -> tuple[NDArray[np.bool_], float]:
    """GrabCut on the window's crop at most `side` pixels a side, the prompt's points painted in:
    the object at full size and its stability."""
    scale = window.scale(side)
    small = window.cut(seeds, scale, cv2.INTER_NEAREST)
    height, width = seeds.shape
    radius = max(2, round(POINT_RADIUS * max(height, width) * scale))
    for point in prompt.points:
        _disc(small, point, radius, cv2.GC_FGD if point.label == 1 else cv2.GC_BGD, window.crop[:2], scale)
    result = _grabcut(window.cut(image[..., ::-1], scale), small)  # OpenCV's channel order, as GrabCut is used to
    if result is None:  # one colour everywhere, or no foreground left to model: the seeds are the answer
        first = second = np.isin(small, (cv2.GC_FGD, cv2.GC_PR_FGD))
    else:
        first, second = result
    return _pointed_components(window.paste(second), prompt), iou(first, second)


def segment_object(
    image: NDArray[np.uint8],
    probs: NDArray[np.floating[Any]],
    labels: tuple[str, ...],
    prompt: PromptedObject,
    prior: NDArray[np.bool_] | None = None,
) -> ObjectMask:
    """`image` (h, w, 3) RGB and `probs` (classes, h, w) at the same size; prompt coordinates in
    that image's pixels. `prior`: an earlier answer's mask for this object (refinement)."""
    height, width = image.shape[:2]
    window = _window(prompt, probs, height, width)
    class_id, model_mask = _guide(probs, prompt, window)
    side = WORK_SIDE if class_id or prior is not None else COLOUR_SIDE
    mask, stability = _cut(image, _seeds(window, probs, class_id, model_mask, prior), prompt, window, side)
    if class_id and not mask.any():  # the model's class led nowhere: colour alone
        class_id, model_mask = 0, np.zeros((height, width), bool)
        side = WORK_SIDE if prior is not None else COLOUR_SIDE
        mask, stability = _cut(image, _seeds(window, probs, 0, model_mask, prior), prompt, window, side)
    agreement = iou(mask, model_mask) if model_mask.any() else 1.0
    return ObjectMask(
        mask=mask,
        score=round(stability * agreement, 4),
        stability=round(stability, 4),
        label=labels[class_id] if class_id else None,
    )


def _grabcut(pixels: NDArray[np.uint8], seeds: NDArray[np.uint8]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]] | None:
    """The foreground after `ITERATIONS`, and after one more (how settled it is)."""
    has_fg = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()
    has_bg = np.isin(seeds, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()
    if not (has_fg and has_bg):
        return None
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    mask = seeds.copy()
    try:
        cv2.grabCut(pixels, mask, NO_RECT, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
        first = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))
        cv2.grabCut(pixels, mask, NO_RECT, bgd, fgd, 1, cv2.GC_EVAL)
    except cv2.error:  # too few distinct colours for its mixture models
        return None
    return first, np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _pointed_components(mask: NDArray[np.bool_], prompt: PromptedObject) -> NDArray[np.bool_]:
    """The connected parts the prompt is about: those under a foreground point, else the largest
    (GrabCut may add specks of similar colour elsewhere in the box)."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    height, width = mask.shape
    keep = {
        int(components[int(np.clip(p.y, 0, height - 1)), int(np.clip(p.x, 0, width - 1))]) for p in prompt.points if p.label == 1
    } - {0}
    if not keep:
        keep = {int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1}
    return np.isin(components, list(keep))


def scaled(prompt: PromptedObject, sx: float, sy: float) -> PromptedObject:
    """The prompt in an image resized by (sx, sy) (from the original to the working copy)."""
    box = prompt.box
    return PromptedObject(
        box=Box(box.x0 * sx, box.y0 * sy, box.x1 * sx, box.y1 * sy) if box is not None else None,
        points=tuple(Point(p.x * sx, p.y * sy, p.label) for p in prompt.points),
    )


@dataclass(frozen=True)
class Found:
    """One object of "segment everything": its mask, quality and the grid point that found it."""

    mask: NDArray[np.bool_]
    score: float
    stability: float
    label: str
    point: Point


def grid(points_per_side: int, height: int, width: int) -> list[Point]:
    """SAM's grid: the centres of an n x n tiling of the image."""
    steps = (np.arange(points_per_side) + 0.5) / points_per_side
    return [Point(float(x * width), float(y * height)) for y in steps for x in steps]


def segment_everything(
    probs: NDArray[np.floating[Any]],
    labels: tuple[str, ...],
    points: list[Point],
    min_score: float,
    min_stability: float,
    limit: int,
) -> list[Found]:
    """Every object the grid's points land on, once each: the connected part of the model's own
    mask under a point, scored by its mean probability times its stability (IoU of the part at
    probability thresholds 0.4 and 0.6, SAM's stability score over a probability map), then
    de-duplicated (a part two points land on is one object). The bundled path finds only what the
    named model knows (shapes for the starter, people for the person model)."""
    height, width = probs.shape[1:]
    winner = probs.argmax(axis=0)
    best: list[tuple[float, int, Found]] = []
    seen: set[tuple[int, int]] = set()
    components_of: dict[int, tuple[int, NDArray[np.int32]]] = {}
    for point in points:
        x, y = int(np.clip(point.x, 0, width - 1)), int(np.clip(point.y, 0, height - 1))
        class_id = int(winner[y, x])
        if class_id == 0:
            continue
        if class_id not in components_of:
            count, components = cv2.connectedComponents((winner == class_id).astype(np.uint8), connectivity=8)
            components_of[class_id] = (count, components)
        component = int(components_of[class_id][1][y, x])
        if (class_id, component) in seen:
            continue
        seen.add((class_id, component))
        mask = components_of[class_id][1] == component
        loose, tight = _part_at(probs[class_id] > 0.4, x, y), _part_at(probs[class_id] > 0.6, x, y)
        stability = iou(loose, tight)
        score = float(probs[class_id][mask].mean()) * stability
        if score >= min_score and stability >= min_stability:  # only the best `limit` masks are kept in memory
            heapq.heappush(
                best, (score, len(best) + len(seen), Found(mask, round(score, 4), round(stability, 4), labels[class_id], point))
            )
            if len(best) > limit:
                heapq.heappop(best)
    return [found for _, _, found in sorted(best, key=lambda item: -item[0])]


def _part_at(binary: NDArray[np.bool_], x: int, y: int) -> NDArray[np.bool_]:
    """The connected part of `binary` that holds (x, y) (empty if it is not set there)."""
    if not binary[y, x]:
        return np.zeros_like(binary)
    _, components = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8)
    return np.asarray(components == components[y, x])


def in_upload(point: Point, sx: float, sy: float) -> Point:
    """A working-copy point back in the uploaded image's pixels (the working copy was scaled by sx, sy)."""
    return Point(round(point.x / sx, 1), round(point.y / sy, 1), point.label)
