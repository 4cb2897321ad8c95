"""Append records to the hash chain in the AUDIT stream.

The chain has one head. Appends publish with `Nats-Expected-Last-Sequence`, so two audit instances
can never fork it: the loser of a race re-reads the head and tries again.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from maskline.contracts.audit_v1 import GENESIS, RECORD_SUBJECT_PREFIX, AuditRecord, chain_hash
from maskline.contracts.envelope import Envelope, now
from maskline.shared.bus import MSG_ID

STREAM = "AUDIT"
_record = msgspec.json.Decoder(AuditRecord)
_peek = msgspec.json.Decoder(Envelope[msgspec.Raw])


class Chain:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.lock = asyncio.Lock()
        self.head: tuple[int, int, str] | None = None  # (stream seq, chain seq, hash)

    async def _load_head(self) -> tuple[int, int, str]:
        info = await self.js.stream_info(STREAM)
        last = info.state.last_seq
        if not last or info.state.messages == 0:
            return (last, 0, GENESIS)
        try:
            raw = await self.js.get_msg(STREAM, last)
        except NotFoundError:
            return (last, 0, GENESIS)
        record = _record.decode(raw.data or b"")
        return (last, record.seq, record.hash)

    async def append(self, *, subject: str, data: bytes, stream: str, stream_seq: int) -> AuditRecord:
        try:
            env: Envelope[msgspec.Raw] | None = _peek.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            env = None  # garbage is recorded too: the trail shows what arrived
        async with self.lock:
            for _ in range(50):
                if self.head is None:
                    self.head = await self._load_head()
                last_stream_seq, last_seq, last_hash = self.head
                record = self._record(env, subject, data, stream, stream_seq, last_seq + 1, last_hash, now())
                token = env.job_id if env else "_"
                try:
                    ack = await self.js.publish(
                        RECORD_SUBJECT_PREFIX + token,
                        msgspec.json.encode(record),
                        headers={MSG_ID: f"audit:{stream}:{stream_seq}", "Nats-Expected-Last-Sequence": str(last_stream_seq)},
                    )
                except APIError as exc:
                    if exc.err_code == 10071:  # wrong last sequence: another writer moved the head
                        self.head = None
                        continue
                    raise
                if ack.duplicate:
                    self.head = None  # already recorded before a redelivery; head is unchanged by it
                else:
                    self.head = (ack.seq, record.seq, record.hash)
                return record
        raise RuntimeError("audit chain: could not append after 50 attempts")

    @staticmethod
    def _record(
        env: Envelope[msgspec.Raw] | None,
        subject: str,
        data: bytes,
        stream: str,
        stream_seq: int,
        seq: int,
        prev_hash: str,
        recorded: datetime,
    ) -> AuditRecord:
        try:
            event = msgspec.Raw(msgspec.json.encode(msgspec.json.decode(data)))
        except msgspec.DecodeError:
            event = msgspec.Raw(msgspec.json.encode({"undecodable": data.decode("utf-8", "replace")[:4096]}))
        record = AuditRecord(
            seq=seq,
            subject=subject,
            event_id=env.id if env else None,
            type=env.type if env else None,
            job_id=env.job_id if env else None,
            tenant=env.tenant if env else None,
            source=env.source if env else None,
            event_time=env.time if env else None,
            recorded=recorded,
            stream=stream,
            stream_seq=stream_seq,
            payload_sha256=hashlib.sha256(data).hexdigest(),
            event=event,
            prev_hash=prev_hash,
        )
        return msgspec.structs.replace(record, hash=chain_hash(record))
