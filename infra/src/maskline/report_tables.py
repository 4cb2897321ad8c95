"""Quantization reports as terminal tables, one layout per kind: each report has its own rows
(STEP and CROSS per layer, the calibrator comparison per method, an edit's travel per layer), so
one generic printer either crashed on them (`KeyError: 'layer'`) or printed `{}`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Row = Sequence[Any]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def render(header: Row, rows: Sequence[Row], footer: Sequence[str] = ()) -> str:
    """Left-aligned columns as wide as their widest cell, then free-text footer lines."""
    cells = [[_cell(v) for v in row] for row in (header, *rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join([*lines, *footer])


def step(doc: dict[str, Any]) -> str:
    rows = [
        (r["layer"], r["type"], r["error"]["sqnr_db"], r["error"]["cosine"], r["error"]["max_abs"], r["output_scale"])
        for r in doc["layers"]
    ]
    footer = [
        f"output: SQNR {doc['output']['sqnr_db']:.1f} dB, pixel agreement {doc['pixel_agreement']:.4f} ({doc['images']} images)"
    ]
    return render(("layer", "type", "sqnr_db", "cosine", "max_abs", "output_scale"), rows, footer)


def cross(doc: dict[str, Any]) -> str:
    rows = [
        (
            r["layer"],
            r["only_this_int8"]["sqnr_db"],
            r["only_this_int8_agreement"],
            r["all_but_this_int8"]["sqnr_db"],
            r["all_but_this_int8_agreement"],
        )
        for r in doc["layers"]
    ]
    footer = [f"all layers int8: output SQNR {doc['int8_output']['sqnr_db']:.1f} dB ({doc['images']} images)"]
    return render(("layer", "only_this_sqnr_db", "only_this_agree", "all_but_this_sqnr_db", "all_but_this_agree"), rows, footer)


def calibrators(doc: dict[str, Any]) -> str:
    rows = [
        (r["method"], r["miou_vs_fp32"], r["pixel_agreement"], r["output_sqnr_db"], r["latency_ms"], r["size_bytes"])
        for r in doc["rows"]
    ]
    footer = [f"fp32: {doc['fp32_latency_ms']:.2f} ms, {doc['fp32_size_bytes']} bytes ({doc['images']} images)"]
    return render(("method", "miou_vs_fp32", "pixel_agreement", "output_sqnr_db", "latency_ms", "size_bytes"), rows, footer)


def travel(doc: dict[str, Any]) -> str:
    rows = [
        (r["layer"], r["sqnr_db_before"], r["sqnr_db_after"], r["sqnr_db_after"] - r["sqnr_db_before"]) for r in doc["layers"]
    ]
    footer = [
        f"edited: {doc['edited']}",
        f"output SQNR {doc['output_sqnr_db_before']:.1f} -> {doc['output_sqnr_db_after']:.1f} dB, "
        f"pixel agreement {doc['pixel_agreement_before']:.4f} -> {doc['pixel_agreement_after']:.4f}",
    ]
    return render(("layer", "sqnr_db_before", "sqnr_db_after", "change_db"), rows, footer)


TABLES: dict[str, Callable[[dict[str, Any]], str]] = {"step": step, "cross": cross, "calibrators": calibrators, "travel": travel}


def evaluation(doc: dict[str, Any]) -> str:
    """One evaluation: a row per class, then the headline numbers."""
    rows = [(c["label"], _or_dash(c["iou"]), _or_dash(c["boundary_f1"]), c["pixels"]) for c in doc["classes"]]
    m = doc["model"]
    footer = [
        f"{m.get('owner') or ''}/{m['name']} v{m['version']} ({doc['precision']}) on {doc['dataset']} "
        f"[{doc['dataset_sha256'][:12]}], {doc['images']} images",
        f"mIoU {doc['miou']:.4f}  pixel accuracy {doc['pixel_accuracy']:.4f}  boundary F {doc['boundary_f1']:.4f} "
        f"(±{doc['boundary_tolerance']} px)  latency {doc['latency_ms']:.1f} ms median, {doc['latency_p90_ms']:.1f} p90",
    ]
    return render(("class", "iou", "boundary_f1", "pixels"), rows, footer)


def comparison(doc: dict[str, Any]) -> str:
    """Versions side by side: a row per version, a column per class IoU."""
    labels = list(doc["labels"])
    header = ("version", "precision", "method", "aliases", "size_mb", "miou", "pixel_acc", "boundary_f", "latency_ms", *labels)
    rows = []
    for v in doc["versions"]:
        e = v["evaluation"]
        scores: list[Any] = (
            [e["miou"], e["pixel_accuracy"], e["boundary_f1"], e["latency_ms"], *(_or_dash(c["iou"]) for c in e["classes"])]
            if e
            else ["-"] * (4 + len(labels))
        )
        rows.append(
            (f"v{v['version']}", v["precision"], v["method"], ",".join(v["aliases"]) or "-", v["size_bytes"] / 1e6, *scores)
        )
    footer = [f"on {doc['dataset']} ('-': not evaluated on it yet: maskline models evaluate NAME:VERSION --dataset ...)"]
    return render(header, rows, footer)


def _or_dash(value: float | None) -> float | str:
    return "-" if value is None else value
