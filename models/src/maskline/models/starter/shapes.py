"""Synthetic "shapes" segmentation data: the starter model's training and held-out sets.

Generated, not downloaded, so the project can train and evaluate its starter model offline.
Colours are random per shape, so the model has to learn geometry rather than colour.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

LABELS: tuple[str, ...] = ("background", "circle", "square", "triangle")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0 = rng.uniform(0, 255, 3)
    c1 = rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    t = (xs * math.cos(angle) + ys * math.sin(angle) + 1) / 2
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    img += rng.normal(0, rng.uniform(2, 18), img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    # Thin lines are background: they teach the model that edges alone are not objects.
    for _ in range(int(rng.integers(0, 6))):
        pts = [tuple(rng.uniform(0, size, 2)) for _ in range(2)]
        color = tuple(int(v) for v in rng.uniform(0, 255, 3))
        draw.line(pts, fill=color, width=int(rng.integers(1, 3)))


def _polygon(kind: int, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    corners = 4 if kind == 2 else 3
    return [
        (cx + r * math.cos(rot + 2 * math.pi * k / corners), cy + r * math.sin(rot + 2 * math.pi * k / corners))
        for k in range(corners)
    ]


def sample(rng: np.random.Generator, size: int = 128) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Return one (image HxWx3 uint8, mask HxW uint8 class ids) pair."""
    image = _background(rng, size)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    mdraw = ImageDraw.Draw(mask)
    _clutter(draw, rng, size)
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(1, len(LABELS)))
        r = rng.uniform(size * 0.07, size * 0.22)
        cx, cy = rng.uniform(r * 0.6, size - r * 0.6, 2)
        color = tuple(int(v) for v in rng.uniform(0, 255, 3))
        if kind == 1:
            box = (cx - r, cy - r, cx + r, cy + r)
            draw.ellipse(box, fill=color)
            mdraw.ellipse(box, fill=kind)
        else:
            pts = _polygon(kind, cx, cy, r, rng.uniform(0, math.pi))
            draw.polygon(pts, fill=color)
            mdraw.polygon(pts, fill=kind)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.2)))
    return np.asarray(image, dtype=np.uint8), np.asarray(mask, dtype=np.uint8)


def batch(rng: np.random.Generator, n: int, size: int = 128) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    pairs = [sample(rng, size) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
