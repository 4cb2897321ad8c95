"""The dead-letter queue: list what consumers gave up on, and re-drive a letter once its cause is fixed.

Re-driving republishes the original message to its original subject with a new `Nats-Msg-Id`
(the old one would be dropped as a duplicate), then deletes the letter. The job it belongs to is
folded back to its stages by the usual events; a re-driven job that completes reads `completed`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from maskline.contracts.common_v1 import DeadLetter
from maskline.shared.bus import MSG_ID, read_stream

STREAM = "DLQ"


class LetterNotFound(LookupError):
    pass


class Letter(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    time: datetime
    consumer: str
    subject: str
    deliveries: int
    code: str
    reason: str
    tenant: str | None
    job_id: str | None


class _Peek(msgspec.Struct):
    tenant: str | None = None
    job_id: str | None = None


def _letter(seq: int, when: datetime, letter: DeadLetter) -> Letter:
    try:
        peek = msgspec.json.decode(letter.data, type=_Peek)
    except (msgspec.ValidationError, msgspec.DecodeError):
        peek = _Peek()  # not even an envelope: visible to operators only
    return Letter(
        seq=seq,
        time=when,
        consumer=letter.consumer,
        subject=letter.subject,
        deliveries=letter.deliveries,
        code=letter.code,
        reason=letter.reason,
        tenant=peek.tenant,
        job_id=peek.job_id,
    )


async def letters(js: JetStreamContext, limit: int = 200) -> list[Letter]:
    """The newest `limit` dead letters, newest first."""
    info = await js.stream_info(STREAM)
    if info.state.messages == 0:
        return []
    start = max(info.state.first_seq, info.state.last_seq - limit + 1)
    found = [
        _letter(msg.metadata.sequence.stream, msg.metadata.timestamp, msgspec.json.decode(msg.data, type=DeadLetter))
        for msg in await read_stream(js, STREAM, "dlq.>", start_seq=start)
    ]
    return sorted(found, key=lambda letter: -letter.seq)


async def get(js: JetStreamContext, seq: int) -> tuple[Letter, DeadLetter]:
    try:
        raw = await js.get_msg(STREAM, seq)
    except NotFoundError as exc:
        raise LetterNotFound(f"no dead letter {seq}") from exc
    letter = msgspec.json.decode(raw.data or b"", type=DeadLetter)
    when = (
        datetime.fromisoformat(raw.headers["Nats-Time-Stamp"])
        if raw.headers and "Nats-Time-Stamp" in raw.headers
        else datetime.now()
    )
    return _letter(seq, when, letter), letter


async def redrive(js: JetStreamContext, seq: int) -> dict[str, Any]:
    """Republish letter `seq` to its subject and delete it; returns what was re-driven."""
    summary, letter = await get(js, seq)
    msg_id = f"{letter.headers.get(MSG_ID, letter.stream + ':' + str(letter.stream_seq))}:redrive:{seq}"
    headers = {**{k: v for k, v in letter.headers.items() if not k.startswith("Nats-")}, MSG_ID: msg_id}
    ack = await js.publish(letter.subject, letter.data, headers=headers)
    await js.delete_msg(STREAM, seq)
    return {"seq": seq, "subject": letter.subject, "stream_seq": ack.seq, "job_id": summary.job_id, "msg_id": msg_id}
