"""Cancel and replay a segmentation.

Cancel (`DELETE /v1/segmentations/{id}`): the job is marked in the `cancels` bucket, which every
stage watches to skip the job's queued work, and its completion fence is claimed with the
`seg.v1.cancelled` event — so a merge already under way loses the fence and removes its files, and
no output stands for the job. If merge claimed the fence first, the job completed: 409.

Replay (`POST /v1/segmentations/{id}/replay`): the finished job's audit records give its input (the
`seg.v1.requested` event) and the version and precision that served it (`seg.v1.completed`); the
replay is a new job pinned to exactly those, and the answer says whether each output matches.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from maskline.contracts import routes, seg_v1
from maskline.contracts.envelope import command, job_event
from maskline.contracts.http_v1 import OutputMatch, ReplayView, SegmentationView
from maskline.contracts.subjects import GATEWAY
from maskline.services.gateway.core.answers import ANSWERS, Answers
from maskline.services.gateway.core.errors import Conflict, NotFound
from maskline.services.gateway.core.intake import ADMISSION_REFUSALS, Intake
from maskline.services.gateway.core.store import Store
from maskline.services.gateway.settings import GatewaySettings
from maskline.services.gateway.tracking.job_routes import owned_job
from maskline.services.gateway.tracking.views import job_path, segmentation_view
from maskline.services.gateway.tracking.waiters import CompletionWaiters
from maskline.shared import tracing
from maskline.shared.bus import Bus
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.fence import Fences, segmentation_fence
from maskline.shared.jobs.state import JobState, JobStore
from maskline.shared.storage import ObjectNotFound
from maskline.shared.tenants.trails import events, finished_trail

#: Fields of regions.json that name the job rather than describe the result.
_PER_JOB = ("job_id", "timings_ms")


async def _no_files() -> None:
    """The cancel wrote no outputs: nothing to remove if it loses the fence."""


async def cancel(
    state: JobState, *, intake: Intake, cancellations: Cancellations, fences: Fences, job_store: JobStore
) -> SegmentationView:
    """Mark the job cancelled for the stages, and claim its completion fence with the cancel."""
    tenant, job_id = state.tenant, state.job_id
    if state.finished:
        raise Conflict(f"segmentation {job_id} is {state.status} already", code="job_finished")
    intake.require_bus()
    await cancellations.mark(tenant, job_id)
    event = job_event(
        seg_v1.CANCELLED, GATEWAY, seg_v1.SegmentationCancelled(by=tenant), tenant=tenant, job_id=job_id, trace_id=state.trace_id
    )
    if not await fences.finish(segmentation_fence(tenant, job_id), "cancel", event, _no_files):
        raise Conflict(f"segmentation {job_id} completed before the cancel reached it", code="job_finished")
    return segmentation_view(await job_store.apply(event))


class ControlController(Controller):
    path = "/v1/segmentations"
    tags = ["segmentations"]

    @post(
        "/{job_id:str}/replay",
        status_code=HTTP_200_OK,
        summary="Re-run a completed segmentation from its audit record (same input, version, options): do outputs match?",
        opt={
            ANSWERS: Answers(
                refusals=Conflict.coded("job_not_completed", "no_audit_record", "input_gone") + ADMISSION_REFUSALS,
                also={202: "The replay still runs after `wait` seconds"},
            )
        },
    )
    async def replay(
        self,
        intake: Intake,
        settings: GatewaySettings,
        bus: Bus,
        store: Store,
        job_store: JobStore,
        waiters: CompletionWaiters,
        fresh_job_id: str,
        tenant: str,
        job_id: str,
        wait: Annotated[float, Parameter(query="wait", ge=0, le=3600, default=60.0, description="Seconds to wait for it")] = 60.0,
    ) -> Response[ReplayView]:
        original = await owned_job(job_store, tenant, job_id)
        if original.status != "completed":
            raise Conflict(
                f"segmentation {job_id} is {original.status}: only a completed one can be replayed", code="job_not_completed"
            )
        trail = await finished_trail(bus.js, tenant, job_id, (seg_v1.REQUESTED, seg_v1.COMPLETED))
        found = {env.type: env for env in reversed(events(trail, (seg_v1.REQUESTED, seg_v1.COMPLETED)))}  # the first of each
        requested, completed = found.get(seg_v1.REQUESTED), found.get(seg_v1.COMPLETED)
        if requested is None or completed is None:
            raise Conflict(f"the audit trail of {job_id} lacks its request or its completion", code="no_audit_record")
        if not await store.exists(requested.data.image.key):
            raise Conflict(f"the input of {job_id} was deleted: it cannot be replayed", code="input_gone")
        served = completed.data.model
        options = msgspec.structs.replace(
            requested.data.options,
            model=served.name,
            owner=served.owner or None,
            version=served.version,
            precision=served.precision,
            alias=None,
        )
        request = seg_v1.SegmentationRequested(
            image=requested.data.image, options=options, filename=requested.data.filename, replay_of=job_id
        )
        intake.require_bus()
        replay_id = fresh_job_id  # kept by the request's Idempotency-Key: a retry replays once
        await intake.admit(tenant, replay_id, options.inferences)
        with waiters.watching(tenant, replay_id) as finished:
            env = command(
                seg_v1.REQUESTED, GATEWAY, request, tenant=tenant, job_id=replay_id, trace_id=tracing.current_trace_id()
            )
            await bus.publish(env)
            state = await job_store.apply(env)
            if wait > 0:
                state = await waiters.result(tenant, replay_id, finished, min(wait, settings.max_wait_s)) or state
        view = await replay_view(store, original, state)
        return Response(view, status_code=HTTP_200_OK if state.finished else HTTP_202_ACCEPTED)

    @get("/{job_id:str}/replays/{replay_id:str}", summary="A replay of a segmentation and whether its outputs match")
    async def replay_result(self, job_store: JobStore, store: Store, tenant: str, job_id: str, replay_id: str) -> ReplayView:
        original, state = await owned_job(job_store, tenant, job_id), await owned_job(job_store, tenant, replay_id)
        return await replay_view(store, original, state)


async def replay_view(store: Store, original: JobState, replay: JobState) -> ReplayView:
    if original.model is None:
        raise NotFound(f"segmentation {original.job_id} has no model recorded")
    outputs = {}
    for name, ref in original.artifacts.items():
        again = replay.artifacts.get(name) if replay.status == "completed" else None
        match = again is not None and again.sha256 == ref.sha256
        if again is not None and not match and name == "regions":
            match = await _same_regions(store, ref.key, again.key)
        outputs[name] = OutputMatch(original_sha256=ref.sha256, replay_sha256=again.sha256 if again else None, match=match)
    return ReplayView(
        original=original.job_id,
        replay=replay.job_id,
        status=replay.status,
        model=original.model,
        outputs=outputs,
        reproduced=replay.status == "completed" and all(o.match for o in outputs.values()),
        links={
            "replay": job_path(replay.job_id),
            "self": routes.fill(routes.REPLAY_RESULT, job_id=original.job_id, replay_id=replay.job_id),
            "audit": f"/v1/audit?job={replay.job_id}",
        },
    )


async def _same_regions(store: Store, first: str, second: str) -> bool:
    """regions.json name their own job and timings: the same result has the same everything else."""
    try:
        a, b = [msgspec.json.decode(await store.get(key)) for key in (first, second)]
    except ObjectNotFound:
        return False
    for doc in (a, b):
        for field in _PER_JOB:
            doc.pop(field, None)
        doc.get("model", {}).pop("alias", None)  # how the original resolved its version; the replay pinned it
        doc.get("model", {}).pop("canary", None)
    return bool(a == b)
