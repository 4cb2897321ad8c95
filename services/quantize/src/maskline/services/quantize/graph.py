"""The network as JSON a front end can draw: nodes (type, output shape, parameters) and edges."""

from __future__ import annotations

from typing import Any

import msgspec
import torch
from torch import nn
from torch.fx import GraphModule, symbolic_trace
from torch.fx.passes.shape_prop import ShapeProp


class Node(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    op: str
    """placeholder, call_module, call_function, call_method, get_attr, output"""
    type: str
    """Layer class (call_module) or function name."""
    target: str
    shape: list[int] | None
    dtype: str | None
    parameters: int


class Graph(msgspec.Struct, frozen=True, kw_only=True):
    nodes: list[Node]
    edges: list[tuple[str, str]]


def _type(gm: GraphModule, node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    if node.op in ("call_function", "call_method"):
        return getattr(node.target, "__name__", str(node.target))
    return node.op


def _parameters(gm: GraphModule, node: torch.fx.Node) -> int:
    if node.op != "call_module":
        return 0
    module = gm.get_submodule(str(node.target))
    count = sum(p.numel() for p in module.parameters())
    weight = getattr(module, "weight", None)
    if count == 0 and callable(weight):  # quantized layers keep packed weights, not parameters
        count = int(weight().numel())
    return int(count)


def describe(model: nn.Module, example: torch.Tensor) -> Graph:
    gm = model if isinstance(model, GraphModule) else symbolic_trace(model)
    try:
        with torch.inference_mode():
            ShapeProp(gm).propagate(example)
    except Exception:  # shapes are a bonus: quantized graphs may not propagate
        pass
    nodes: list[Node] = []
    edges: list[tuple[str, str]] = []
    for node in gm.graph.nodes:
        meta: Any = node.meta.get("tensor_meta")
        shape = list(meta.shape) if meta is not None and hasattr(meta, "shape") else None
        dtype = str(meta.dtype).removeprefix("torch.") if meta is not None and hasattr(meta, "dtype") else None
        nodes.append(
            Node(
                id=node.name,
                op=node.op,
                type=_type(gm, node),
                target=str(node.target),
                shape=shape,
                dtype=dtype,
                parameters=_parameters(gm, node),
            )
        )
        edges.extend((str(source.name), str(node.name)) for source in node.all_input_nodes)
    return Graph(nodes=nodes, edges=edges)
