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
CONTRACT_VERSION = "1.14"


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
    traceparent: str | None = None
    """W3C trace context of the span that published this message (its trace is the job's
    `trace_id`): a consumer's span continues it. Set by the bus client on publish. Added in 1.7."""


def new_trace_id() -> str:
    return uuid.uuid4().hex


def new_job_id() -> str:
    return uuid.uuid4().hex


def now() -> datetime:
    return datetime.now(UTC)


# The one place envelopes are made and their ids formatted. An id is `<job>:<type>[:<part>...]`:
# deterministic for the work it stands for, so a retry publishes the same id and JetStream's
# duplicate window drops the second copy.


def event_id(job_id: str, type_: str, *parts: object) -> str:
    return ":".join([job_id, type_, *(str(part) for part in parts)])


def job_event(
    type_: str,
    source: str,
    data: T,
    *,
    tenant: str,
    job_id: str,
    trace_id: str,
    parts: tuple[object, ...] = (),
    deadline: datetime | None = None,
) -> Envelope[T]:
    """An event of a known job: it carries the job and the trace of the command that caused it."""
    return Envelope(
        id=event_id(job_id, type_, *parts),
        type=type_,
        time=now(),
        source=source,
        tenant=tenant,
        job_id=job_id,
        trace_id=trace_id,
        data=data,
        deadline=deadline,
    )


def command(
    type_: str,
    source: str,
    data: T,
    *,
    tenant: str,
    job_id: str | None = None,
    deadline: datetime | None = None,
    trace_id: str | None = None,
) -> Envelope[T]:
    """A command that starts a job: a new job id (unless the caller reserved one) and a new trace
    (unless the request came inside one: an HTTP `traceparent`)."""
    return job_event(
        type_, source, data, tenant=tenant, job_id=job_id or new_job_id(), trace_id=trace_id or new_trace_id(), deadline=deadline
    )


def next_event(previous: Envelope[Any], type_: str, source: str, data: T, *, part: int | None = None) -> Envelope[T]:
    """The event that follows `previous` in the same job; its id is deterministic for retries.

    `part` tells apart several events of one type in a job (the variants of a TTA job).
    """
    return job_event(
        type_,
        source,
        data,
        tenant=previous.tenant,
        job_id=previous.job_id,
        trace_id=previous.trace_id,
        parts=() if part is None else (part,),
        deadline=previous.deadline,
    )


def major(version: str) -> str:
    return version.split(".", 1)[0]
