"""Lay out a Triton model repository for a registered model version (Python backend + TorchScript or ONNX)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

from maskline.contracts.model_v1 import ModelVersion

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: {max_batch}
version_policy: {{ all {{ }} }}
input [ {{ name: "image" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }} ]
output [ {{ name: "probs" data_type: TYPE_FP16 dims: [ -1, -1, -1 ] }} ]
instance_group [ {{ count: {instances} kind: {kind} }} ]
dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}
"""


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def triton_name(model: ModelVersion) -> str:
    """The model's name in Triton: owner and name (neither may contain a dot), so two tenants'
    models of the same name never share a repository folder."""
    return f"{model.owner}.{model.name}" if model.owner else model.name


def write_version(
    root: Path, model: ModelVersion, weights: bytes, *, kind: str, instances: int, max_batch: int, queue_delay_us: int = 2000
) -> Path:
    """Write config, backend code and weights for one version; returns the version folder."""
    if hashlib.sha256(weights).hexdigest() != model.weights.sha256:
        raise ValueError(f"weights of {model.name}/{model.version} do not match their registered sha256")
    model_dir = root / triton_name(model)
    config = CONFIG.format(
        name=triton_name(model), max_batch=max_batch, instances=instances, kind=kind, queue_delay_us=queue_delay_us
    ).encode()
    _write_atomic(model_dir / "config.pbtxt", config)
    version_dir = model_dir / str(model.version)
    backend = resources.files("maskline.services.infer").joinpath("backend/model.py").read_bytes()
    spec = {"format": model.format, "output": model.output.name, "kind": model.output.kind, "precision": model.precision}
    _write_atomic(version_dir / ("model.onnx" if model.format == "onnx" else "model.pt"), weights)
    _write_atomic(version_dir / "model.py", backend)
    _write_atomic(version_dir / "model.json", json.dumps(spec).encode())  # written last: the backend reads it first
    return version_dir
