"""The dead-letter queue: list what consumers gave up on, read one letter, remove it.

Re-driving is done by the consumer that gave up (`Runtime.reprocess_letter`, asked over the
services API): it runs its handler on the letter once more and publishes what follows, so only
that consumer sees the message again and no one else needs the right to publish its input. The
job is folded forward by the usual events; a re-driven job that completes reads `completed`.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError, ServerError

from maskline.contracts.common_v1 import DeadLetter
from maskline.shared.bus import read_stream, tenant_token

STREAM = "DLQ"
#: JetStream's error code for a delete in a stream that holds no message (the one asked for included).
NO_MESSAGE_FOUND = 10057


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
        # Whose it is: the subject says (the credential allowed it); the envelope only claims.
        tenant=tenant_token(letter.subject) if letter.subject.count(".") >= 3 else None,
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


async def remove(js: JetStreamContext, seq: int) -> None:
    """Delete letter `seq` once its consumer re-processed it."""
    try:
        await js.delete_msg(STREAM, seq)
    except (NotFoundError, BadRequestError) as exc:  # the server answers 400 "sequence not found"
        raise LetterNotFound(f"no dead letter {seq}") from exc
    except ServerError as exc:  # ... or, when the stream holds no message at all, 500 "no message found"
        if exc.err_code != NO_MESSAGE_FOUND:
            raise
        raise LetterNotFound(f"no dead letter {seq}") from exc
