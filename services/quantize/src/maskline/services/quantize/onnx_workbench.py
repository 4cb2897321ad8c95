"""The ONNX side of a quantize job: float model bytes in, a QDQ model and its JSON reports out.

Any registered float version gets here without its source code: an ONNX version as it is, a
TorchScript version exported to ONNX first (`export`), when the exporter can trace it.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy as np
import onnx
import onnxruntime
import torch
from numpy.typing import NDArray

from maskline.contracts.model_v1 import CalibrationMethod
from maskline.services.quantize import onnx_qdq
from maskline.services.quantize.calibrators import METHODS, Observed
from maskline.services.quantize.reports import agreement, error
from maskline.services.quantize.workbench import CalibratorComparison, CalibratorRow, miou


@dataclass(frozen=True)
class OnnxJob:
    weights: bytes
    """The float parent: ONNX, or TorchScript (`format`) that is exported first."""
    format: str
    images: list[NDArray[np.float32]]
    report_images: int
    method: CalibrationMethod
    precision: str
    per_channel: bool
    keep_float: tuple[str, ...]
    percentile: float
    compare: bool
    cross_layers: int = 8


@dataclass(frozen=True)
class OnnxBuilt:
    weights: bytes
    documents: dict[str, bytes]
    summary: dict[str, float]


class OnnxRecipe(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to rebuild the QDQ model from its float parent."""

    format: str = "onnx"
    method: str
    precision: str
    per_channel: bool
    keep_float: tuple[str, ...]
    reduce_range: bool
    ranges: dict[str, tuple[float, float]]


class NotExportable(ValueError):
    """A TorchScript model the ONNX exporter cannot trace."""


def export(torchscript: bytes, example: NDArray[np.float32]) -> bytes:
    """A TorchScript model as ONNX (the exporter runs it once on `example`), batch dimension dynamic."""
    module = torch.jit.load(io.BytesIO(torchscript), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    out = io.BytesIO()
    try:
        torch.onnx.export(
            module,
            (torch.from_numpy(example),),
            out,  # type: ignore[arg-type]  # the TorchScript exporter writes to any binary file object
            input_names=["image"],
            output_names=["scores"],
            dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    except Exception as exc:
        raise NotExportable(f"the TorchScript model cannot be exported to ONNX: {exc}") from exc
    return out.getvalue()


def _latency_ms(model: bytes, example: NDArray[np.float32], runs: int = 20) -> float:
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    times = []
    for i in range(runs + 3):
        started = time.perf_counter()
        session.run(None, {name: example})
        if i >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def quantize(job: OnnxJob, progress: Callable[[str, int, int], None]) -> OnnxBuilt:
    source = job.weights if job.format == "onnx" else export(job.weights, job.images[0])
    model = onnx_qdq.load(source)
    float_bytes = onnx_qdq.as_bytes(model)
    observed = onnx_qdq.observe(model, job.images, lambda seen: progress("calibrate", seen, len(job.images)))
    chosen = onnx_qdq.ranges(observed, job.method, job.percentile)
    keep_float = tuple(dict.fromkeys((*job.keep_float, *onnx_qdq.output_head(model))))
    plan = onnx_qdq.Plan("hybrid" if job.precision == "hybrid" else "int8", job.per_channel, keep_float=keep_float)
    qdq = onnx_qdq.quantize(model, chosen, plan)
    progress("reports", 0, 1)
    evaluation = job.images[-job.report_images :]
    step = onnx_qdq.step(model, qdq, evaluation, hybrid=plan.precision == "hybrid")
    cross = onnx_qdq.cross(model, chosen, plan, step, evaluation, job.cross_layers)
    recipe = OnnxRecipe(
        method=job.method,
        precision=plan.precision,
        per_channel=job.per_channel,
        keep_float=keep_float,
        reduce_range=onnx_qdq.REDUCE_RANGE,
        ranges={name: (r.lo, r.hi) for name, r in chosen.items()},
    )
    documents = {
        "step": msgspec.json.encode(step),
        "cross": msgspec.json.encode(cross),
        "graph": msgspec.json.encode(onnx_qdq.describe(onnx.load_from_string(qdq))),
        "recipe": msgspec.json.encode(recipe),
    }
    if job.compare:
        documents["calibrators"] = msgspec.json.encode(compare_calibrators(job, model, float_bytes, observed, plan, progress))
    summary = {
        "output_sqnr_db": step.output.sqnr_db,
        "pixel_agreement": step.pixel_agreement,
        "size_bytes": float(len(qdq)),
        "size_ratio": round(len(qdq) / len(job.weights), 4),
    }
    return OnnxBuilt(weights=qdq, documents=documents, summary=summary)


def compare_calibrators(
    job: OnnxJob,
    model: onnx.ModelProto,
    float_bytes: bytes,
    observed: dict[str, Observed],
    plan: onnx_qdq.Plan,
    progress: Callable[[str, int, int], None],
) -> CalibratorComparison:
    """Every calibrator on the same graph and observations: mIoU against FP32's classes, latency, size."""
    evaluation = job.images[-job.report_images :]
    reference = onnx_qdq.outputs(float_bytes, evaluation)
    example = evaluation[0]
    rows = []
    for i, method in enumerate(METHODS):
        progress("compare", i, len(METHODS))
        variant = onnx_qdq.quantize(model, onnx_qdq.ranges(observed, method, job.percentile), plan)
        output = onnx_qdq.outputs(variant, evaluation)
        rows.append(
            CalibratorRow(
                method=method,
                miou_vs_fp32=miou(reference, output),
                pixel_agreement=agreement(reference, output),
                output_sqnr_db=error(reference, output).sqnr_db,
                latency_ms=_latency_ms(variant, example),
                size_bytes=len(variant),
            )
        )
    return CalibratorComparison(
        images=len(evaluation), fp32_latency_ms=_latency_ms(float_bytes, example), fp32_size_bytes=len(float_bytes), rows=rows
    )
