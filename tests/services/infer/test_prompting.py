"""The bundled promptable path on generated shapes: boxes, points, refusals of nothing, everything."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from maskline.contracts.seg_v1 import Box, Point, PromptedObject
from maskline.models.starter import shapes
from maskline.services.infer import prompting

pytestmark = pytest.mark.unit


def instances(mask: NDArray[np.uint8]) -> list[tuple[int, NDArray[np.bool_]]]:
    """(class, pixels) of each connected shape of a generated mask."""
    found = []
    for class_id in range(1, len(shapes.LABELS)):
        count, components = cv2.connectedComponents((mask == class_id).astype(np.uint8))
        found += [(class_id, components == k) for k in range(1, count) if (components == k).sum() >= 30]
    return found


def one_hot(mask: NDArray[np.uint8], sure: float = 0.98) -> NDArray[np.float32]:
    """A model that knows the true classes (probability `sure` on them)."""
    probs = np.full((len(shapes.LABELS), *mask.shape), (1 - sure) / (len(shapes.LABELS) - 1), np.float32)
    for class_id in range(len(shapes.LABELS)):
        probs[class_id][mask == class_id] = sure
    return probs


def box_of(pixels: NDArray[np.bool_]) -> Box:
    ys, xs = np.nonzero(pixels)
    return Box(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def test_a_box_around_each_shape_gives_its_mask_with_or_without_a_model_that_knows_it() -> None:
    rng = np.random.default_rng(5)
    with_model, colour_only = [], []
    for _ in range(12):
        image, mask = shapes.sample(rng, 192)
        for class_id, truth in instances(mask):
            prompt = PromptedObject(box=box_of(truth))
            known = prompting.segment_object(image, one_hot(mask), shapes.LABELS, prompt)
            unknown = prompting.segment_object(image, np.zeros_like(one_hot(mask)), shapes.LABELS, prompt)
            with_model.append(prompting.iou(known.mask, truth))
            colour_only.append(prompting.iou(unknown.mask, truth))
            assert known.label == shapes.LABELS[class_id]
            assert unknown.label is None
    assert np.mean(with_model) > 0.9, with_model
    assert np.mean(colour_only) > 0.85, colour_only


def test_a_point_on_a_shape_finds_that_shape_and_not_its_neighbours() -> None:
    rng = np.random.default_rng(11)
    image, mask = shapes.sample(rng, 192)
    while len(instances(mask)) < 2:
        image, mask = shapes.sample(rng, 192)
    for _, truth in instances(mask):
        ys, xs = np.nonzero(cv2.erode(truth.astype(np.uint8), np.ones((5, 5), np.uint8)))
        if not xs.size:
            continue
        point = Point(float(xs[len(xs) // 2]), float(ys[len(ys) // 2]))
        answer = prompting.segment_object(image, one_hot(mask), shapes.LABELS, PromptedObject(points=(point,)))
        assert prompting.iou(answer.mask, truth) > 0.85


def test_a_background_point_takes_pixels_out() -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:48, 16:48] = (200, 40, 40)
    image[16:48, 32:48] = (40, 200, 40)  # the right half of the box is another colour
    box = PromptedObject(box=Box(14, 14, 50, 50))
    whole = prompting.segment_object(image, np.zeros((2, 64, 64), np.float32), ("background", "thing"), box)
    left = PromptedObject(box=Box(14, 14, 50, 50), points=(Point(24, 32), Point(40, 32, 0)))
    part = prompting.segment_object(image, np.zeros((2, 64, 64), np.float32), ("background", "thing"), left)
    assert whole.mask[32, 40] and whole.mask[32, 24]
    assert part.mask[32, 24] and not part.mask[32, 40]


def test_segment_everything_finds_each_shape_once() -> None:
    rng = np.random.default_rng(3)
    _, mask = shapes.sample(rng, 192)
    while len(instances(mask)) < 3:
        _, mask = shapes.sample(rng, 192)
    truths = instances(mask)
    found = prompting.segment_everything(one_hot(mask), shapes.LABELS, prompting.grid(16, 192, 192), 0.5, 0.9, 64)
    matched = [max(range(len(found)), key=lambda i, t=t: prompting.iou(found[i].mask, t)) for _, t in truths]
    assert len(found) == len(truths)
    assert sorted(matched) == list(range(len(truths)))
    assert all(prompting.iou(found[m].mask, t) > 0.95 for m, (_, t) in zip(matched, truths, strict=True))


def test_prompts_are_scaled_with_the_image() -> None:
    prompt = PromptedObject(box=Box(10, 20, 30, 40), points=(Point(15, 25, 0),))
    half = prompting.scaled(prompt, 0.5, 0.25)
    assert half.box == Box(5, 5, 15, 10)
    assert half.points == (Point(7.5, 6.25, 0),)
