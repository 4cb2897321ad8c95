"""The envelope every bus message travels in (CloudEvents attribute names where they fit)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

#: Ids that may appear as a subject token (NATS ADR-6 grammar) and in object keys.
Token = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,128}$")]

#: Major.minor of the contract family. Consumers accept any minor of their major.
CONTRACT_VERSION = "1.4"


class Envelope(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """Metadata around an event's `data`; identical for every subject."""

    id: str
    """Deterministic id of the work this message stands for; also its `Nats-Msg-Id`."""
    type: str
    """The subject the event belongs on, e.g. `seg.v1.requested`."""
    version: str = CONTRACT_VERSION
    """Contract version `major.minor`; a consumer refuses a major it does not speak."""
    time: datetime
    source: str
    """The service (or external system) that produced the event."""
    tenant: Token
    job_id: Token
    trace_id: str
    data: T
    deadline: datetime | None = None
    """When the job stops being worth finishing: past it, whichever stage holds it fails it with
    `deadline_exceeded` instead of running late. Carried to every event of the job. Added in 1.3."""


def new_trace_id() -> str:
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(UTC)


def next_event(previous: Envelope[Any], type_: str, source: str, data: T, *, part: int | None = None) -> Envelope[T]:
    """The event that follows `previous` in the same job; its id is deterministic for retries.

    `part` tells apart several events of one type in a job (the variants of a TTA job).
    """
    return Envelope(
        id=f"{previous.job_id}:{type_}" + ("" if part is None else f":{part}"),
        type=type_,
        time=now(),
        source=source,
        tenant=previous.tenant,
        job_id=previous.job_id,
        trace_id=previous.trace_id,
        data=data,
        deadline=previous.deadline,
    )


def major(version: str) -> str:
    return version.split(".", 1)[0]
