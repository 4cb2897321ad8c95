"""Register a model version: weights into object storage, record into the registry, event on the bus."""

from __future__ import annotations

import hashlib
import uuid

import maskline
from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope, new_trace_id, now
from maskline.contracts.model_v1 import Architecture, ModelVersion, QuantizationInfo
from maskline.shared.bus import Bus
from maskline.shared.registry import ModelRegistry, VersionExists
from maskline.shared.storage import ObjectStore


def weights_key(name: str, version: int, weights: bytes) -> str:
    """Content-addressed inside the version folder: two registrations racing for one version
    number can never overwrite each other's file (the loser retries with the next number)."""
    return f"models/{name}/{version}/model-{hashlib.sha256(weights).hexdigest()[:16]}.pt"


def graph_key(name: str, version: int) -> str:
    """Graph JSON of a float version, written by the quantize service when the version is registered."""
    return f"models/{name}/{version}/graph.json"


async def register_model(
    store: ObjectStore,
    registry: ModelRegistry,
    bus: Bus,
    *,
    name: str,
    weights: bytes,
    labels: tuple[str, ...],
    input_size: tuple[int, int],
    source: str,
    tenant: str = "system",
    version: int | None = None,
    description: str = "",
    metrics: dict[str, float] | None = None,
    precision: str = "fp32",
    parent: str | None = None,
    architecture: Architecture | None = None,
    quantization: QuantizationInfo | None = None,
) -> ModelVersion:
    """Store and register `weights` as the next (or the given) version of `name`.

    Weights are written before the registry record, so a registered version always has its bytes.
    """
    for _ in range(5):
        number = version or await registry.next_version(name)
        ref = await store.put(weights_key(name, number, weights), weights, "application/x-torchscript")
        model = ModelVersion(
            name=name,
            version=number,
            labels=labels,
            input_size=input_size,
            weights=ref,
            precision=precision,
            parent=parent,
            code_version=maskline.__version__,
            created=now(),
            metrics=metrics or {},
            description=description,
            architecture=architecture,
            quantization=quantization,
            owner=tenant,
        )
        try:
            await registry.add(model)
        except VersionExists:
            if version is not None:
                raise
            continue  # another registration took this number: take the next one
        event = Envelope(
            id=f"model:{name}:{number}:registered",
            type=model_v1.REGISTERED,
            time=now(),
            source=source,
            tenant=tenant,
            job_id=uuid.uuid4().hex,
            trace_id=new_trace_id(),
            data=model_v1.ModelRegistered(model=model),
        )
        await bus.publish(event)
        return model
    raise VersionExists(f"could not allocate a version for {name}")
