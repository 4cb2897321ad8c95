"""Collect the per-variant predictions of a TTA job durably, until all have arrived.

One key per job in the `tta` bucket maps variant index → its `seg.v1.inferred` payload, updated
with compare-and-set. A redelivered variant overwrites its own slot (never counted twice), and a
merge restart loses nothing: what was recorded before the crash is still in the bucket.
"""

from __future__ import annotations

from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.contracts import seg_v1

BUCKET = "tta"
Slots = dict[str, seg_v1.SegmentationInferred]
_decoder = msgspec.json.Decoder(Slots)


class VariantCollector:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: Any = None

    async def open(self, replicas: int = 1) -> None:
        try:
            self._kv = await self._js.key_value(BUCKET)
        except (BucketNotFoundError, NotFoundError):
            self._kv = await self._js.create_key_value(
                KeyValueConfig(bucket=BUCKET, history=1, storage=StorageType.FILE, replicas=replicas, ttl=24 * 3600.0)
            )

    async def record(self, job_id: str, inferred: seg_v1.SegmentationInferred) -> list[seg_v1.SegmentationInferred] | None:
        """Store one variant; return all of them, in index order, once the set is complete."""
        for _ in range(50):
            try:
                entry = await self._kv.get(job_id)
                slots, revision = _decoder.decode(entry.value), entry.revision
            except (KeyNotFoundError, NotFoundError):
                slots, revision = {}, None
            slots[str(inferred.variant_index)] = inferred
            try:
                if revision is None:
                    await self._kv.create(job_id, msgspec.json.encode(slots))
                else:
                    await self._kv.update(job_id, msgspec.json.encode(slots), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another merge worker recorded a sibling variant: read again
            if len(slots) < inferred.variant_count:
                return None
            return [slots[str(i)] for i in range(inferred.variant_count)]
        raise RuntimeError(f"TTA job {job_id}: too many concurrent updates")
