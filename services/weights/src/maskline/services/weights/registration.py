"""`model.v1.register.requested` → check the uploaded weights → a new version → `model.v1.registered`.

The gateway only stores the upload and publishes the command (torch stays out of it); a bus client
may publish the same command. The registration carries the command's job and trace, and the job
reserves its version number, so a redelivery finds the version it made instead of making another.
"""

from __future__ import annotations

import asyncio
from typing import Any

from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope
from maskline.contracts.model_v1 import ModelFormat
from maskline.services.weights.modelcheck import check_model, invalid
from maskline.services.weights.sam_check import check_sam_pair
from maskline.shared import references
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.models.store import register_model
from maskline.shared.service.runtime import Runtime


class Registrations:
    def __init__(self, runtime: Runtime, registry: ModelRegistry, source: str) -> None:
        self.runtime = runtime
        self.registry = registry
        self.source = source

    async def handle(self, env: Envelope[model_v1.RegisterRequested]) -> list[Envelope[Any]]:
        data = env.data
        weights = await references.read(self.runtime.store, data.weights, env.tenant)
        decoder = None
        if data.decoder is not None or data.format == "sam":
            if data.decoder is None:
                raise invalid("a SAM-format version needs its prompt decoder (decoder) beside the image encoder (weights)")
            decoder_bytes = await references.read(self.runtime.store, data.decoder, env.tenant)
            decoder = await asyncio.to_thread(check_sam_pair, weights, decoder_bytes, data.input_size, data.preprocessing)
            found: ModelFormat = "sam"
        else:
            found = await asyncio.to_thread(check_model, weights, len(data.labels), data.input_size, data.output, data.format)
        await register_model(  # under the command's own tenant: nobody registers for another
            self.runtime.store,
            self.registry,
            self.runtime.bus,
            name=data.name,
            weights=weights,
            labels=data.labels,
            input_size=data.input_size,
            source=self.source,
            tenant=env.tenant,
            description=data.description,
            architecture=data.architecture,
            job_id=env.job_id,
            trace_id=env.trace_id,
            format=found,
            output=data.output,
            preprocessing=data.preprocessing,
            decoder=decoder,
        )
        return []  # register_model announced it (model.v1.registered, with this job and trace)
