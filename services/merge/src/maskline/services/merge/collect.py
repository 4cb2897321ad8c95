"""Collect the per-variant predictions of a TTA job durably, until all have arrived.

One key per job in the `tta` bucket maps variant index → its `seg.v1.inferred` payload, updated
with compare-and-set. A redelivered variant overwrites its own slot (never counted twice), and a
merge restart loses nothing: what was recorded before the crash is still in the bucket.
"""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext

from maskline.contracts import seg_v1
from maskline.shared.kv import BucketStore, compare_and_set

BUCKET = "tta"
Slots = dict[str, seg_v1.SegmentationInferred]
_decoder = msgspec.json.Decoder(Slots)


class VariantCollector(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)

    async def record(
        self, tenant: str, job_id: str, inferred: seg_v1.SegmentationInferred
    ) -> list[seg_v1.SegmentationInferred] | None:
        """Store one variant; return all of them, in index order, once the set is complete."""

        def add(slots: Slots | None) -> Slots:
            return {**(slots or {}), str(inferred.variant_index): inferred}

        slots = await compare_and_set(self.kv, f"{tenant}.{job_id}", _decoder, add)
        if slots is None or len(slots) < inferred.variant_count:
            return None
        return [slots[str(i)] for i in range(inferred.variant_count)]
