"""STEP, CROSS and graph documents on the starter model."""

from __future__ import annotations

import math

import msgspec
import pytest
import torch
from torch import nn

from maskline.services.quantize import engine, reports
from maskline.services.quantize.graph import describe

pytestmark = pytest.mark.unit


def test_error_metrics_known_answers() -> None:
    a = torch.tensor([3.0, 4.0])
    assert reports.error(a, a).sqnr_db == 999.0  # exact: no noise
    e = reports.error(a, torch.tensor([3.0, 3.0]))
    assert e.sqnr_db == pytest.approx(10 * math.log10(25 / 1), abs=1e-3)
    assert e.max_abs == 1.0 and e.l2_normalized == pytest.approx(0.2)
    assert e.cosine == pytest.approx(21 / (5 * math.sqrt(18)), abs=1e-6)


def test_step_has_every_int8_layer(starter: nn.Module, int8: engine.Quantized, images: torch.Tensor) -> None:
    step = reports.step(engine.fused_float(starter), int8.model, images[:4])
    names = [row.layer for row in step.layers]
    assert names == list(engine.quantized_layers(int8.model))
    first = step.layers[0]
    assert first.layer == "enc1.0" and first.type == "ConvReLU2d"
    assert len(first.weight_scale) == 16  # per channel
    assert sum(first.weight_int8.histogram.counts) == 16 * 3 * 3 * 3
    assert first.input_scale is not None and first.input_scale > 0
    assert all(row.error.sqnr_db > 10 and row.error.cosine > 0.95 for row in step.layers)
    assert step.output.sqnr_db > 20 and step.pixel_agreement > 0.99
    msgspec.json.encode(step)  # JSON-serialisable as stored


def test_cross_swaps_one_layer_each_way(starter: nn.Module, int8: engine.Quantized, images: torch.Tensor) -> None:
    fused = engine.fused_float(starter)
    report = reports.cross(fused, int8.model, images[:4])
    assert len(report.layers) == len(engine.quantized_layers(int8.model))
    for row in report.layers:
        # One int8 layer hurts less than all of them; one float layer leaves the int8 output close to full int8.
        assert row.only_this_int8.sqnr_db >= report.int8_output.sqnr_db - 0.5
        assert abs(row.all_but_this_int8.sqnr_db - report.int8_output.sqnr_db) < 10
    only = reports.cross(fused, int8.model, images[:4], only="head")
    assert [r.layer for r in only.layers] == ["head"]
    with torch.inference_mode():  # swaps are undone
        assert torch.equal(int8.model(images[:2]), engine.rebuild(starter, int8.recipe, images[:1])(images[:2]))


def test_graph_nodes_and_edges(starter: nn.Module, int8: engine.Quantized, images: torch.Tensor) -> None:
    graph = describe(starter, images[:1])
    ids = {n.id for n in graph.nodes}
    assert all(a in ids and b in ids for a, b in graph.edges)
    conv = next(n for n in graph.nodes if n.target == "enc1.0")
    assert conv.type == "Conv2d" and conv.shape == [1, 16, 128, 128] and conv.parameters == 16 * 3 * 3 * 3
    cats = [n for n in graph.nodes if n.type == "cat"]
    assert len(cats) == 3  # the U-Net's skip connections
    quantized = describe(int8.model, images[:1])
    assert any(n.type == "ConvReLU2d" and n.dtype == "quint8" for n in quantized.nodes)
