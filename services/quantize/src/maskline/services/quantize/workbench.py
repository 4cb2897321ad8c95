"""The torch side of a quantize or edit job: bytes in, TorchScript and JSON reports out (runs in a thread)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from maskline.contracts.model_v1 import Architecture, CalibrationMethod
from maskline.services.quantize import architecture as arch
from maskline.services.quantize import engine, reports
from maskline.services.quantize.calibrators import METHODS
from maskline.services.quantize.graph import describe


@dataclass(frozen=True)
class Inputs:
    weights: bytes
    """The float parent's TorchScript."""
    architecture: Architecture
    allowed: tuple[str, ...]
    images: list[NDArray[np.float32]]
    """1 x 3 x H x W each, preprocessed as infer does."""
    report_images: int
    batch: int


@dataclass(frozen=True)
class Built:
    torchscript: bytes
    recipe: engine.Recipe
    documents: dict[str, bytes]
    summary: dict[str, float]


class CalibratorRow(msgspec.Struct, frozen=True, kw_only=True):
    method: CalibrationMethod
    miou_vs_fp32: float
    pixel_agreement: float
    output_sqnr_db: float
    latency_ms: float
    """Median of batch-1 runs in this process (the benchmark measures through Triton)."""
    size_bytes: int


class CalibratorComparison(msgspec.Struct, frozen=True, kw_only=True):
    images: int
    fp32_latency_ms: float
    fp32_size_bytes: int
    rows: list[CalibratorRow]


class TravelRow(msgspec.Struct, frozen=True, kw_only=True):
    layer: str
    sqnr_db_before: float
    sqnr_db_after: float


class Travel(msgspec.Struct, frozen=True, kw_only=True):
    """How far an edit travels: each layer's STEP SQNR before and after, and the output's."""

    edited: str
    layers: list[TravelRow]
    output_sqnr_db_before: float
    output_sqnr_db_after: float
    pixel_agreement_before: float
    pixel_agreement_after: float


def float_model(inputs: Inputs, keep_float: tuple[str, ...]) -> nn.Module:
    model = arch.rewrite_upsampling(arch.load(inputs.architecture, inputs.weights, inputs.allowed))
    arch.check_supported(model, keep_float)
    return model


def _tensor(inputs: Inputs) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(inputs.images))


def miou(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean IoU of `other`'s classes against `reference`'s (logits N x C x H x W), over classes present."""
    a, b = reference.argmax(1), other.argmax(1)
    ious = []
    for c in range(reference.shape[1]):
        union = int(((a == c) | (b == c)).sum())
        if union:
            ious.append(int(((a == c) & (b == c)).sum()) / union)
    return round(float(np.mean(ious)), 6) if ious else 1.0


def latency_ms(model: nn.Module, example: torch.Tensor, runs: int = 20) -> float:
    times = []
    with torch.inference_mode():
        for i in range(runs + 3):
            started = time.perf_counter()
            model(example)
            if i >= 3:
                times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def quantize(inputs: Inputs, recipe: engine.Recipe, compare: bool, progress: Callable[[str, int, int], None]) -> Built:
    model = float_model(inputs, recipe.keep_float)
    x = _tensor(inputs)
    example = x[:1]
    batches = [x[i : i + inputs.batch] for i in range(0, len(x), inputs.batch)]
    quantized = engine.quantize(model, recipe, batches, example, lambda seen: progress("calibrate", seen, len(x)))
    progress("reports", 0, 1)
    fused = engine.fused_float(model)
    evaluation = x[-inputs.report_images :]
    step = reports.step(fused, quantized.model, evaluation)
    cross = reports.cross(fused, quantized.model, evaluation)
    torchscript = engine.to_torchscript(quantized.model, example)
    checked_torchscript(torchscript, example)
    documents = {
        "step": msgspec.json.encode(step),
        "cross": msgspec.json.encode(cross),
        "graph": msgspec.json.encode(describe(quantized.model, example)),
        "recipe": msgspec.json.encode(quantized.recipe),
    }
    if compare:
        comparison = compare_calibrators(inputs, model, fused, recipe, batches, evaluation, progress)
        documents["calibrators"] = msgspec.json.encode(comparison)
    summary = {
        "output_sqnr_db": step.output.sqnr_db,
        "pixel_agreement": step.pixel_agreement,
        "size_bytes": float(len(torchscript)),
        "size_ratio": round(len(torchscript) / len(inputs.weights), 4),
    }
    return Built(torchscript=torchscript, recipe=quantized.recipe, documents=documents, summary=summary)


def compare_calibrators(
    inputs: Inputs,
    model: nn.Module,
    fused: nn.Module,
    recipe: engine.Recipe,
    batches: list[torch.Tensor],
    evaluation: torch.Tensor,
    progress: Callable[[str, int, int], None],
) -> CalibratorComparison:
    """Every method on the same model and data: mIoU against FP32's classes, latency, size."""
    with torch.inference_mode():
        reference = fused(evaluation)
    fp32 = engine.load_torchscript(inputs.weights)
    example = evaluation[:1]
    rows = []
    for i, method in enumerate(METHODS):
        progress("compare", i, len(METHODS))
        variant = engine.quantize(model, msgspec.structs.replace(recipe, method=method, observers={}), batches, example)
        with torch.inference_mode():
            output = reports.plain(variant.model(evaluation))
        torchscript = engine.to_torchscript(variant.model, example)
        rows.append(
            CalibratorRow(
                method=method,
                miou_vs_fp32=miou(reference, output),
                pixel_agreement=reports.agreement(reference, output),
                output_sqnr_db=reports.error(reference, output).sqnr_db,
                latency_ms=latency_ms(engine.load_torchscript(torchscript), example),
                size_bytes=len(torchscript),
            )
        )
    return CalibratorComparison(
        images=int(evaluation.shape[0]),
        fp32_latency_ms=latency_ms(fp32, example),
        fp32_size_bytes=len(inputs.weights),
        rows=rows,
    )


def edit(inputs: Inputs, before: engine.Recipe, after: engine.Recipe) -> Built:
    """Rebuild the version with one more edit; STEP on it, and how far the edit travelled."""
    model = float_model(inputs, after.keep_float)
    x = _tensor(inputs)
    example = x[:1]
    fused = engine.fused_float(model)
    evaluation = x[-inputs.report_images :]
    old = reports.step(fused, engine.rebuild(model, before, example), evaluation)
    edited = engine.rebuild(model, after, example)
    new = reports.step(fused, edited, evaluation)
    travel = Travel(
        edited=after.edits[-1].layer,
        layers=[
            TravelRow(layer=a.layer, sqnr_db_before=a.error.sqnr_db, sqnr_db_after=b.error.sqnr_db)
            for a, b in zip(old.layers, new.layers, strict=True)
        ],
        output_sqnr_db_before=old.output.sqnr_db,
        output_sqnr_db_after=new.output.sqnr_db,
        pixel_agreement_before=old.pixel_agreement,
        pixel_agreement_after=new.pixel_agreement,
    )
    torchscript = engine.to_torchscript(edited, example)
    checked_torchscript(torchscript, example)
    documents = {
        "step": msgspec.json.encode(new),
        "travel": msgspec.json.encode(travel),
        "graph": msgspec.json.encode(describe(edited, example)),
        "recipe": msgspec.json.encode(after),
    }
    summary = {
        "output_sqnr_db": new.output.sqnr_db,
        "pixel_agreement": new.pixel_agreement,
        "size_bytes": float(len(torchscript)),
    }
    return Built(torchscript=torchscript, recipe=after, documents=documents, summary=summary)


def float_graph(weights: bytes, architecture: Architecture, allowed: tuple[str, ...], input_size: tuple[int, int]) -> bytes:
    model = arch.load(architecture, weights, allowed)
    return msgspec.json.encode(describe(model, torch.zeros(1, 3, *input_size)))


def checked_torchscript(data: bytes, example: torch.Tensor) -> None:
    """Load the saved bytes back and run them once: never register what cannot be served."""
    module = engine.load_torchscript(data)
    with torch.inference_mode():
        module(example)
