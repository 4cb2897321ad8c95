"""A job's progress pushed to the client as server-sent events (`GET /v1/jobs/{id}/events`):
the job's view now, then again each time its projection writes a new state, until it is final.
The CLI's progress bars read it instead of polling.

Event types: `progress` while the job runs, then its final status (`completed`, `failed`,
`cancelled`); the data is the same JSON as `GET /v1/jobs/{id}`. A job that reports nothing for
KEEPALIVE_S gets its view sent again (proxies do not close an idle stream, clients can check their
own deadlines); the state is read afresh then, in case the watch missed an update while the bus
reconnected.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
from litestar import Controller, get
from litestar.openapi.spec import Reference, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.response import ServerSentEvent, ServerSentEventMessage

from maskline.contracts.subjects import FINAL_STATUSES
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.errors import NotFound
from maskline.services.gateway.tracking.job_routes import job_view
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.shared.jobs.state import JobState, JobStore

KEEPALIVE_S = 15.0
#: One event of the stream, for the OpenAPI document (Open API 3.2's shape of an event: its fields).
EVENT = Schema(
    type=OpenAPIType.OBJECT,
    required=["event", "data"],
    properties={
        "event": Schema(
            type=OpenAPIType.STRING,
            enum=["progress", *FINAL_STATUSES],
            description="`progress` while the job runs, then its final status; the last event",
        ),
        "data": Schema(
            type=OpenAPIType.STRING,
            content_media_type="application/json",
            content_schema=Reference(ref="#/components/schemas/JobView"),
            description="The job's view, as `GET /v1/jobs/{job_id}` answers it",
        ),
    },
    description=f"Sent at once, on every change, and again after {KEEPALIVE_S:.0f} s without one",
)


def _message(state: JobState) -> ServerSentEventMessage:
    event = state.status if state.finished else "progress"
    return ServerSentEventMessage(data=msgspec.json.encode(job_view(state)).decode(), event=event)


class JobEventsController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]

    @get(
        "/{job_id:str}/events",
        summary="The job's progress as server-sent events, until it finishes",
        opt={ANSWERS: Answers(events=EVENT)},
    )
    async def events(self, job_store: JobStore, waiters: CompletionWaiters, tenant: str, job_id: str) -> ServerSentEvent:
        return await progress_stream(job_store, waiters, tenant, job_id)


async def progress_stream(job_store: JobStore, waiters: CompletionWaiters, tenant: str, job_id: str) -> ServerSentEvent:
    if await job_store.get(tenant, job_id) is None:
        raise NotFound(f"no job {job_id}")

    async def events() -> AsyncIterator[ServerSentEventMessage]:
        with waiters.following(tenant, job_id) as updates:
            state = await job_store.get(tenant, job_id)  # read after listening: nothing falls between
            if state is None:
                return
            yield _message(state)
            while not state.finished:
                try:
                    newer = await asyncio.wait_for(updates.get(), KEEPALIVE_S)
                except TimeoutError:
                    newer = await job_store.get(tenant, job_id) or state
                if newer.updated < state.updated:
                    continue  # an older write delivered late
                state = newer
                yield _message(state)

    return ServerSentEvent(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
