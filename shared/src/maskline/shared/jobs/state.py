"""Job state in a JetStream key-value bucket, so any service (and the gateway) can answer status.

The state is a projection of the job's events: `apply` folds one event in, idempotently and in any
order (a later stage never moves back), with compare-and-set so concurrent writers do not clobber.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

import msgspec
from nats.js import JetStreamContext

from maskline.contracts import dataset_v1, model_v1, seg_v1
from maskline.contracts import subjects as table
from maskline.contracts.common_v1 import ModelRef, ObjectRef
from maskline.contracts.envelope import Envelope
from maskline.contracts.http_v1 import JobError
from maskline.shared.bus import read_stream
from maskline.shared.jobs.effects import EFFECTS
from maskline.shared.kv import BucketStore, Revisions, compare_and_set, get_decoded

BUCKET = "jobs"
Status = table.JobStatus
RANK = table.JOB_STATUS_RANK
#: Event type → the status it puts a job in, and its payload type: the subjects the table marks with
#: a job status are the ones this projection folds.
STATUS_OF: dict[str, Status] = {s.type: s.job_status for s in table.SUBJECTS if s.job_status is not None}
PAYLOADS: dict[str, type[msgspec.Struct]] = {s.type: s.payload for s in table.SUBJECTS if s.job_status is not None}


JobKind = table.JobKind


def ends_job(kind: JobKind, type_: str) -> bool:
    """Whether an event of `type_` is the one that ends a job of `kind`. A registration completes only
    a registration job: a merge or quantization registers its result on the way to its own final event."""
    if STATUS_OF.get(type_) not in table.FINAL_STATUSES:
        return False
    return type_ != model_v1.REGISTERED or kind == "registration"


class JobState(msgspec.Struct, kw_only=True):
    job_id: str
    tenant: str
    status: Status
    kind: JobKind = "segmentation"
    created: datetime
    updated: datetime
    trace_id: str
    options: seg_v1.SegmentationOptions = seg_v1.SegmentationOptions()
    filename: str | None = None
    model: ModelRef | None = None
    width: int | None = None
    height: int | None = None
    regions: int | None = None
    confidence: seg_v1.Confidence | None = None
    objects: tuple[seg_v1.ObjectFound, ...] = ()
    artifacts: dict[str, ObjectRef] = {}
    timings_ms: dict[str, float] = {}
    error: JobError | None = None
    progress: dict[str, int] = {}
    """Dataset jobs: done/total images, outputs written/skipped."""
    dataset: dataset_v1.DatasetExpandRequested | None = None
    stage: str | None = None
    """Quantize jobs: the step now running (calibrate, reports, compare)."""
    request: str = ""
    """Fingerprint of the command that started the job (`request_fingerprint`): another command
    naming the same job id is not this job's, and changes nothing of it."""

    @property
    def finished(self) -> bool:
        return self.status in table.FINAL_STATUSES


_decoder = msgspec.json.Decoder(JobState)
_encoder = msgspec.json.Encoder()


def request_fingerprint(data: Any) -> str:
    """What tells one command from another for the same job id: the hash of its payload."""
    return hashlib.sha256(_encoder.encode(data)).hexdigest()[:32]


#: A job in one of these is never started again: a command under its id changes nothing of it (and
#: the command gate does not run it). A failed job may still complete (a re-driven letter).
FROZEN: tuple[Status, ...] = ("completed", "cancelled")


def _fold(state: JobState | None, env: Envelope[Any]) -> JobState:
    status = STATUS_OF[env.type]
    if state is None:
        state = JobState(
            job_id=env.job_id, tenant=env.tenant, status="requested", created=env.time, updated=env.time, trace_id=env.trace_id
        )
    data = env.data
    if env.type in table.JOB_KIND_OF:  # a command: only the job's own, and only while it may still run
        fingerprint = request_fingerprint(data)
        if (state.request and state.request != fingerprint) or (state.status in FROZEN and state.request):
            return state
        state.request = fingerprint
    state.kind = table.JOB_KIND_OF.get(env.type, state.kind)
    effect = EFFECTS.get(type(data))  # every contract has one (test_effects); anything else moves the status only
    if effect is not None and effect(state, data) is False:
        status = state.status  # an event on the way, not the one that moves this job (effects.py)
    if RANK[status] > RANK[state.status] or (status == "failed" and state.status not in ("completed", "cancelled")):
        state.status = status
    elif status == "completed" and state.status == "failed":  # a re-driven dead letter made it to the end
        state.status = "completed"
    if state.status == "completed":
        state.error = None  # in any order of events: a completed job carries no error
    state.updated = max(state.updated, env.time)
    return state


_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def state_key(tenant: str, job_id: str) -> str:
    """Jobs are keyed by tenant and id: a job id chosen by one tenant can never touch another's job."""
    return f"{tenant}.{job_id}"


class JobStore(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)
        # A job's events come one after another to the same writer (audit): each fold starts from
        # the state it wrote last instead of reading it again (3 reads fewer per segmentation).
        self._revisions = Revisions()

    async def get(self, tenant: str, job_id: str) -> JobState | None:
        """The tenant's job; another tenant's job with the same id is a different key, never this one."""
        if not _TOKEN.match(tenant) or not _TOKEN.match(job_id):
            return None
        return await get_decoded(self.kv, state_key(tenant, job_id), _decoder)

    async def recent(self, limit: int = 50) -> list[JobState]:
        """The `limit` most recently updated jobs, newest first (from the tail of the bucket's stream)."""
        info = await self.js.stream_info(f"KV_{BUCKET}")
        if info.state.messages == 0:
            return []
        start = max(info.state.first_seq, info.state.last_seq - 8 * limit)
        latest: dict[str, JobState] = {}
        for msg in await read_stream(self.js, f"KV_{BUCKET}", f"$KV.{BUCKET}.>", start_seq=start):
            if msg.data:
                state = _decoder.decode(msg.data)
                latest[state.job_id] = state
        return sorted(latest.values(), key=lambda s: s.updated, reverse=True)[:limit]

    async def apply(self, env: Envelope[Any]) -> JobState:
        """Fold an event into the job's state with compare-and-set, retrying on a concurrent write.
        An event that changes nothing (a redelivery, the request the gateway already recorded) is
        not written again: the state is written at most once per event."""
        return await self.apply_all([env])

    async def apply_all(self, envs: list[Envelope[Any]]) -> JobState:
        """Fold several events of one job in one write (those that arrived together: the fold does
        not depend on their order)."""
        first = envs[0]

        def change(current: JobState | None) -> JobState | None:
            before = None if current is None else _encoder.encode(current)
            after = current
            for env in envs:
                after = _fold(after, env)
            assert after is not None
            return None if before is not None and _encoder.encode(after) == before else after

        key = state_key(first.tenant, first.job_id)
        state = await compare_and_set(self.kv, key, _decoder, change, revisions=self._revisions)
        assert state is not None
        return state
