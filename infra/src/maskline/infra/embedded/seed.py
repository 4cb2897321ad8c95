"""Provision the streams and buckets, and register the bundled models as the platform's public
models (idempotent). Runs as the `admin` identity, before any service starts.

- `shapes-unet` (TorchScript): the starter U-Net trained on generated shapes, quantizable.
- `person-selfie` (ONNX): MediaPipe's selfie segmentation network converted by
  `maskline.models.person.convert`; person vs background on real photos.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import msgspec

from maskline.contracts.model_v1 import Architecture, ModelFormat
from maskline.contracts.subjects import ADMIN, PLATFORM_TENANT
from maskline.shared.bus import Bus, connect
from maskline.shared.config import RuntimeSettings
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.store import register_model
from maskline.shared.provision import provision
from maskline.shared.storage import ObjectStore, open_store

STARTER = "shapes-unet"
PERSON = "person-selfie"


@dataclass(frozen=True)
class Bundled:
    package: str
    weights: str
    format: ModelFormat
    description: str


BUNDLED = (
    Bundled(
        "maskline.models.starter", "model.pt", "torchscript", "Small U-Net trained on generated shapes (maskline.models.starter)"
    ),
    Bundled(
        "maskline.models.person",
        "model.onnx",
        "onnx",
        "Person segmentation: MediaPipe's selfie segmentation network (Apache-2.0), converted (maskline.models.person)",
    ),
)


class Manifest(msgspec.Struct, frozen=True):
    """What the seed reads of a bundled model's manifest.json (the rest documents its making)."""

    name: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    architecture: Architecture | None = None
    held_out: dict[str, Any] | None = None


def bundled_files(model: Bundled) -> tuple[bytes, Manifest]:
    folder = resources.files(model.package).joinpath("weights")
    manifest = msgspec.json.decode(folder.joinpath("manifest.json").read_bytes(), type=Manifest)
    return folder.joinpath(model.weights).read_bytes(), manifest


def starter_files() -> tuple[bytes, Manifest]:
    return bundled_files(BUNDLED[0])


async def _seed(store: ObjectStore, registry: ModelRegistry, bus: Bus, model: Bundled) -> None:
    weights, manifest = bundled_files(model)
    try:
        await registry.get(PLATFORM_TENANT, manifest.name, 1)
        return
    except ModelNotFound:
        pass
    await register_model(
        store,
        registry,
        bus,
        name=manifest.name,
        version=1,
        weights=weights,
        labels=manifest.labels,
        input_size=manifest.input_size,
        source="seed",
        tenant=PLATFORM_TENANT,
        description=model.description,
        metrics={"held_out_miou": float(manifest.held_out["miou"])} if manifest.held_out else {},
        architecture=manifest.architecture,
        format=model.format,
    )


async def provision_and_seed(settings: RuntimeSettings) -> None:
    bus = await connect(settings, "provision", identity=ADMIN)
    try:
        await provision(bus.js, settings.stream_replicas, {"quality": settings.quality_retention_days * 24 * 3600})
        registry = ModelRegistry(bus.js)
        await registry.open()
        store = open_store(settings, ADMIN)
        for model in BUNDLED:
            await _seed(store, registry, bus, model)
    finally:
        await bus.close()
