"""Provision the streams and buckets, and register the bundled starter model as the platform's
public model (idempotent). Runs as the `admin` identity, before any service starts."""

from __future__ import annotations

import json
from importlib import resources

import msgspec

from maskline.contracts.model_v1 import Architecture
from maskline.contracts.subjects import ADMIN, PLATFORM_TENANT
from maskline.shared.bus import connect
from maskline.shared.config import RuntimeSettings
from maskline.shared.model_store import register_model
from maskline.shared.provision import provision
from maskline.shared.registry import ModelNotFound, ModelRegistry
from maskline.shared.storage import open_store

STARTER = "shapes-unet"


def starter_files() -> tuple[bytes, dict[str, object]]:
    folder = resources.files("maskline.models.starter").joinpath("weights")
    return folder.joinpath("model.pt").read_bytes(), json.loads(folder.joinpath("manifest.json").read_text())


async def provision_and_seed(settings: RuntimeSettings) -> None:
    bus = await connect(settings, "provision", identity=ADMIN)
    try:
        await provision(bus.js, settings.stream_replicas)
        registry = ModelRegistry(bus.js)
        await registry.open()
        try:
            await registry.get(PLATFORM_TENANT, STARTER, 1)
            return
        except ModelNotFound:
            pass
        weights, manifest = starter_files()
        held_out = manifest["held_out"]
        assert isinstance(held_out, dict)
        await register_model(
            open_store(settings),
            registry,
            bus,
            name=STARTER,
            version=1,
            weights=weights,
            labels=tuple(manifest["labels"]),  # type: ignore[arg-type]
            input_size=tuple(manifest["input_size"]),  # type: ignore[arg-type]
            source="seed",
            tenant=PLATFORM_TENANT,
            description="Small U-Net trained on generated shapes (maskline.models.starter)",
            metrics={"held_out_miou": float(held_out["miou"])},
            architecture=msgspec.convert(manifest["architecture"], Architecture),
        )
    finally:
        await bus.close()
