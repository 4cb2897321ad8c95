"""Read a job's audit trail back from the AUDIT stream, in order."""

from __future__ import annotations

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from maskline.contracts.audit_v1 import RECORD_SUBJECT_PREFIX, AuditRecord

_record = msgspec.json.Decoder(AuditRecord)


async def job_trail(js: JetStreamContext, job_id: str, limit: int = 1000) -> list[AuditRecord]:
    """Records of one job, oldest first, read with an ephemeral consumer filtered on its subject."""
    subject = RECORD_SUBJECT_PREFIX + job_id
    config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, inactive_threshold=10.0)
    sub = await js.pull_subscribe(subject, stream="AUDIT", config=config)
    records: list[AuditRecord] = []
    try:
        while len(records) < limit:
            try:
                msgs = await sub.fetch(min(256, limit - len(records)), timeout=0.3)
            except (NatsTimeoutError, TimeoutError):
                break
            records.extend(_record.decode(m.data) for m in msgs)
            if msgs and msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return records
