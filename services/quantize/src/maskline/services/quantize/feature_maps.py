"""Step one image through an int8 version and its float parent (fused the same way, so layer names
match) and draw one layer's output channels: per channel the float map and the int8 map side by
side, both on the float map's scale, so what quantization did to that layer is visible."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from maskline.services.quantize import engine, reports, workbench

#: Pixels of one feature map in the picture (maps are scaled up, nearest, to at least this).
CELL = 96
GAP = 6
LABEL = 12
PAIRS_PER_ROW = 4


@dataclass(frozen=True)
class Maps:
    png: bytes
    shown: tuple[int, ...]
    sqnr_db: float
    float_range: tuple[float, float]
    int8_range: tuple[float, float]


def render(inputs: workbench.Inputs, recipe: engine.Recipe, layer: str, image: NDArray[np.float32], channels: int) -> Maps:
    """`image`: 1 x 3 x H x W as infer feeds the model."""
    model = workbench.float_model(inputs, recipe.keep_float)
    x = torch.from_numpy(image)
    fused = engine.fused_float(model)
    int8 = engine.rebuild(model, recipe, x)
    if layer not in dict(int8.named_modules()) or layer not in dict(fused.named_modules()):
        layers = ", ".join(sorted(engine.quantized_layers(int8)))
        raise engine.QuantizationError(f"no layer named {layer!r}; int8 layers: {layers}")
    _, float_out, fh = reports._record(fused, [layer])
    _, int8_out, qh = reports._record(int8, [layer])
    with torch.inference_mode():
        fused(x)
        int8(x)
    for handle in (*fh, *qh):
        handle.remove()
    a = reports.plain(float_out[layer])[0].float().numpy()
    b = reports.plain(int8_out[layer])[0].float().numpy()
    if a.ndim != 3:
        raise engine.QuantizationError(f"layer {layer!r} does not output feature maps (its output is {list(a.shape)})")
    order = np.argsort(-a.reshape(a.shape[0], -1).var(axis=1))[: min(channels, a.shape[0])]
    shown = tuple(sorted(int(c) for c in order))
    error = reports.error(torch.from_numpy(a), torch.from_numpy(b))
    return Maps(
        png=_picture(a, b, shown),
        shown=shown,
        sqnr_db=error.sqnr_db,
        float_range=(round(float(a.min()), 6), round(float(a.max()), 6)),
        int8_range=(round(float(b.min()), 6), round(float(b.max()), 6)),
    )


def _gray(plane: NDArray[np.float32], lo: float, hi: float, size: tuple[int, int]) -> Image.Image:
    scaled = np.clip((plane - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    return Image.fromarray((scaled * 255).astype(np.uint8), mode="L").resize(size, Image.Resampling.NEAREST)


def _picture(a: NDArray[np.float32], b: NDArray[np.float32], shown: tuple[int, ...]) -> bytes:
    h, w = a.shape[1:]
    scale = max(1, CELL // max(h, w))
    size = (w * scale, h * scale)
    rows = (len(shown) + PAIRS_PER_ROW - 1) // PAIRS_PER_ROW
    pair_w = 2 * size[0] + GAP
    canvas = Image.new("L", (PAIRS_PER_ROW * (pair_w + 2 * GAP), rows * (size[1] + LABEL + GAP)), 255)
    draw = ImageDraw.Draw(canvas)
    for i, channel in enumerate(shown):
        lo, hi = float(a[channel].min()), float(a[channel].max())  # both on the float map's scale
        left = (i % PAIRS_PER_ROW) * (pair_w + 2 * GAP)
        top = (i // PAIRS_PER_ROW) * (size[1] + LABEL + GAP)
        draw.text((left, top), f"ch {channel}", fill=0)  # float on the left, int8 on the right
        canvas.paste(_gray(a[channel], lo, hi, size), (left, top + LABEL))
        canvas.paste(_gray(b[channel], lo, hi, size), (left + size[0] + GAP, top + LABEL))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()
