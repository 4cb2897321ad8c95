"""Register a model version: weights into object storage, record into the registry, event on the bus."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from maskline.contracts import model_v1
from maskline.contracts.envelope import job_event, new_trace_id, now
from maskline.contracts.model_v1 import (
    Architecture,
    ModelFormat,
    ModelOutput,
    ModelVersion,
    Preprocessing,
    PromptDecoder,
    QuantizationInfo,
)
from maskline.shared import keys
from maskline.shared.bus import Bus
from maskline.shared.models.access import lineage_of, upstream_of
from maskline.shared.models.registry import ModelRegistry, VersionExists
from maskline.shared.storage import ObjectStore
from maskline.shared.version import CODE_VERSION


@dataclass(frozen=True)
class DecoderFile:
    """A SAM-format version's prompt decoder as registration stores it (`PromptDecoder` then names it)."""

    weights: bytes
    encoder_input: str
    encoder_output: str
    mask_input_size: tuple[int, int]


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
    tenant: str,
    version: int | None = None,
    description: str = "",
    metrics: dict[str, float] | None = None,
    precision: str = "fp32",
    parent: str | None = None,
    architecture: Architecture | None = None,
    quantization: QuantizationInfo | None = None,
    parents: list[ModelVersion] | None = None,
    job_id: str | None = None,
    trace_id: str | None = None,
    reservation: str | None = None,
    format: ModelFormat = "torchscript",
    output: ModelOutput | None = None,
    preprocessing: Preprocessing | None = None,
    decoder: DecoderFile | None = None,
) -> ModelVersion:
    """Store and register `weights` as the next (or the given) version of `tenant`'s model `name`.

    Weights are written before the registry record, so a registered version always has its bytes.
    `parents` (merge inputs, a quantization's float parent) give the lineage, and what the new
    version depends on that `tenant` does not own. The registration event carries the job and
    trace of the work that made the version, so its audit trail is complete. `decoder`: a SAM-format
    version's prompt decoder. A job (or the
    `reservation` it names, one per round of a federation) registers exactly one version however
    often it runs: its number is reserved once and a repeat finds the version it made.
    """
    reservation = reservation or job_id
    sha256 = hashlib.sha256(weights).hexdigest()
    for _ in range(10):
        if reservation is not None and version is None:
            number = await registry.reserve(tenant, name, reservation)  # the same number on every attempt
            done = await registry.find(tenant, name, number)
            if done is not None and done.job_id == reservation:
                await _announce(bus, done, source, job_id, trace_id)  # a repeat: same version, same message id
                return done
            if done is not None:  # another registration took the number since: reserve the next one
                await registry.move_reservation(tenant, name, reservation, number)
                continue
        else:
            number = version or await registry.next_version(tenant, name)
        suffix, media = ("pt", "application/x-torchscript") if format == "torchscript" else ("onnx", "application/onnx")
        ref = await store.put(keys.model_weights(tenant, name, number, sha256, suffix), weights, media)
        prompt_decoder = None
        if decoder is not None:
            decoder_key = keys.model_weights(tenant, name, number, hashlib.sha256(decoder.weights).hexdigest(), "decoder.onnx")
            prompt_decoder = PromptDecoder(
                weights=await store.put(decoder_key, decoder.weights, "application/onnx"),
                encoder_input=decoder.encoder_input,
                encoder_output=decoder.encoder_output,
                mask_input_size=decoder.mask_input_size,
            )
        model = ModelVersion(
            name=name,
            version=number,
            labels=labels,
            input_size=input_size,
            weights=ref,
            precision=precision,
            parent=parent,
            code_version=CODE_VERSION,
            created=now(),
            metrics=metrics or {},
            description=description,
            architecture=architecture,
            quantization=quantization,
            owner=tenant,
            lineage=lineage_of(parents or []),
            upstream=upstream_of(tenant, parents or []),
            job_id=reservation or "",
            format=format,
            output=output or ModelOutput(),
            preprocessing=preprocessing or Preprocessing(),
            decoder=prompt_decoder,
        )
        try:
            await registry.add(model)
        except VersionExists:
            if version is not None:
                raise
            continue  # another registration took this number: take (or reserve) the next one
        await _announce(bus, model, source, job_id, trace_id)
        return model
    raise VersionExists(f"could not allocate a version for {name}")


async def _announce(bus: Bus, model: ModelVersion, source: str, job_id: str | None, trace_id: str | None) -> None:
    await bus.publish(
        job_event(
            model_v1.REGISTERED,
            source,
            model_v1.ModelRegistered(model=model),
            tenant=model.owner,
            # a registration no command asked for (the bundled model, provisioned) is its own job
            job_id=job_id or f"register-{model.owner}-{model.name}-{model.version}",
            trace_id=trace_id or new_trace_id(),
            parts=(model.owner, model.name, model.version),
        )
    )
