"""Lay out a Triton model repository for a registered model version (Python backend + TorchScript or ONNX):
in a folder Triton shares with this service (one host), or in the object store, which Triton reads
as an S3 repository (`s3://host:port/bucket/prefix`), so infer and Triton may run on different nodes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

from maskline.contracts.model_v1 import SAM_DECODER_INPUT_RANKS, SAM_DECODER_OUTPUT_RANKS, ModelVersion

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: {max_batch}
version_policy: {{ all {{ }} }}
input [ {{ name: "image" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] }} ]
output [ {{ name: "probs" data_type: TYPE_FP16 dims: [ -1, -1, -1 ] }} ]
instance_group [ {{ count: {instances} kind: {kind} }} ]
dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}
"""


#: A SAM-format part: its ONNX graph's named tensors in and out as they are (no batching: the
#: decoder's inputs carry their own leading dimensions).
NAMED_CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
version_policy: {{ all {{ }} }}
input [ {inputs} ]
output [ {outputs} ]
instance_group [ {{ count: {instances} kind: {kind} }} ]
"""


def _tensors(ranks: dict[str, int]) -> str:
    return ", ".join(
        f'{{ name: "{name}" data_type: TYPE_FP32 dims: [ {", ".join(["-1"] * rank)} ] }}' for name, rank in ranks.items()
    )


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


def decoder_name(model: ModelVersion) -> str:
    """A SAM-format version's prompt decoder in Triton (no model name holds a dot: no clash)."""
    return f"{triton_name(model)}.decoder"


def sam_files(model: ModelVersion, encoder: bytes, decoder: bytes, *, kind: str, instances: int) -> list[tuple[str, bytes]]:
    """A SAM-format version as two Triton models of named tensors: its image encoder and its
    prompt decoder, each run by the backend's ONNX Runtime as it is."""
    assert model.decoder is not None
    for part, data, ref in (("image encoder", encoder, model.weights), ("prompt decoder", decoder, model.decoder.weights)):
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ValueError(f"the {part} of {model.name}/{model.version} does not match its registered sha256")
    backend = resources.files("maskline.services.infer").joinpath("backend/model.py").read_bytes()
    spec = json.dumps({"format": "onnx-io", "precision": model.precision}).encode()
    files: list[tuple[str, bytes]] = []
    parts = (
        (triton_name(model), encoder, {model.decoder.encoder_input: 4}, {model.decoder.encoder_output: 4}),
        (decoder_name(model), decoder, SAM_DECODER_INPUT_RANKS, SAM_DECODER_OUTPUT_RANKS),
    )
    for name, data, inputs, outputs in parts:
        config = NAMED_CONFIG.format(
            name=name, inputs=_tensors(inputs), outputs=_tensors(outputs), instances=instances, kind=kind
        )
        version = f"{name}/{model.version}"
        files += [
            (f"{name}/config.pbtxt", config.encode()),
            (f"{version}/model.onnx", data),
            (f"{version}/model.py", backend),
            (f"{version}/model.json", spec),
        ]
    return files


def version_files(
    model: ModelVersion, weights: bytes, *, kind: str, instances: int, max_batch: int, queue_delay_us: int = 0
) -> list[tuple[str, bytes]]:
    """Config, weights and backend code of one version, as (path in the repository, content), in
    the order to write them: the version's model.json last, as the backend reads it first."""
    if hashlib.sha256(weights).hexdigest() != model.weights.sha256:
        raise ValueError(f"weights of {model.name}/{model.version} do not match their registered sha256")
    name = triton_name(model)
    config = CONFIG.format(name=name, max_batch=max_batch, instances=instances, kind=kind, queue_delay_us=queue_delay_us)
    version = f"{name}/{model.version}"
    backend = resources.files("maskline.services.infer").joinpath("backend/model.py").read_bytes()
    spec = {"format": model.format, "output": model.output.name, "kind": model.output.kind, "precision": model.precision}
    return [
        (f"{name}/config.pbtxt", config.encode()),
        (f"{version}/{'model.onnx' if model.format == 'onnx' else 'model.pt'}", weights),
        (f"{version}/model.py", backend),
        (f"{version}/model.json", json.dumps(spec).encode()),
    ]


def write_version(root: Path, files: list[tuple[str, bytes]]) -> None:
    """Write a version's files into a repository folder, each atomically."""
    for relative, data in files:
        _write_atomic(root / relative, data)


def s3_repository(url: str, bucket: str) -> str:
    """The key prefix of an S3 repository URL (`s3://host:port/<bucket>/<prefix>`) in the store's
    `bucket`: infer writes the repository through its own object store, so both must agree."""
    parts = url.removeprefix("s3://").split("/", 2)
    if len(parts) < 3 or not parts[2].strip("/"):
        raise ValueError(f"MASKLINE_TRITON_REPOSITORY {url!r} is not s3://host:port/bucket/prefix")
    if parts[1] != bucket:
        raise ValueError(f"MASKLINE_TRITON_REPOSITORY {url!r} is not in the object store's bucket {bucket!r}")
    return parts[2].strip("/")
