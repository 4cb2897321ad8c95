"""Collect the per-variant predictions of a TTA job durably, until all have arrived.

One key per job in the `tta` bucket maps variant index → its `seg.v1.inferred` payload, updated
with compare-and-set. A redelivered variant overwrites its own slot (never counted twice), and a
merge restart loses nothing: what was recorded before the crash is still in the bucket.
"""

from __future__ import annotations

from typing import Any

import msgspec
from nats.js import JetStreamContext

from maskline.contracts import seg_v1
from maskline.shared.kv import compare_and_set, open_bucket

BUCKET = "tta"
Slots = dict[str, seg_v1.SegmentationInferred]
_decoder = msgspec.json.Decoder(Slots)


class VariantCollector:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: Any = None

    async def open(self) -> None:
        self._kv = await open_bucket(self._js, BUCKET)

    async def record(
        self, tenant: str, job_id: str, inferred: seg_v1.SegmentationInferred
    ) -> list[seg_v1.SegmentationInferred] | None:
        """Store one variant; return all of them, in index order, once the set is complete."""

        def add(slots: Slots | None) -> Slots:
            return {**(slots or {}), str(inferred.variant_index): inferred}

        slots = await compare_and_set(self._kv, f"{tenant}.{job_id}", _decoder, add)
        if slots is None or len(slots) < inferred.variant_count:
            return None
        return [slots[str(i)] for i in range(inferred.variant_count)]
