"""What every command (a message that starts a job) passes before its handler, whoever published
it — the gateway or an outside system — since nothing in its envelope can be trusted to say which:

- the job id is this command's: a job that exists with another request (a different command under
  the same id, published to hijack or rewrite it) is refused as `job_exists`, dead-lettered,
  and the job it names is left as it was;
- a finished job (completed, cancelled) is never run again: its command, repeated, is skipped;
- admission: the tenant's rate and unfinished jobs, and for segmentations the pipeline's backlog,
  at `admission.BUS_FACTOR` times the gateway's limits (`Admission.for_bus`), on a command's first
  delivery (a redelivery is work admitted before). A refusal fails the job with its code.

The consumer runtime applies it to every consumer of a command subject (`Runtime.consume`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import structlog
from nats.aio.client import Client

from maskline.contracts import subjects as table
from maskline.contracts.envelope import Envelope
from maskline.shared.errors import PermanentError
from maskline.shared.jobs.admission import Admission
from maskline.shared.jobs.state import FROZEN, JobStore, ends_job, request_fingerprint

log = structlog.get_logger("commands")
_header = msgspec.json.Decoder(Envelope[msgspec.Raw])


class JobTaken(PermanentError):
    """The command names a job that exists with another request."""

    code = "job_exists"


def cost_of(data: Any) -> int:
    """Inferences a command costs (a TTA segmentation: one per variant); 1 for every other job."""
    return int(getattr(data, "inferences", 1))


@dataclass
class CommandGate:
    jobs: JobStore
    admission: Admission
    kinds: dict[tuple[str, str], table.JobKind] = field(default_factory=dict)
    """The kind of each job admitted here and not finished (which event ends it)."""

    async def verdict(self, env: Envelope[Any], deliveries: int) -> Literal["run", "skip"]:
        """ "run", or "skip" (a finished job's command again); raises JobTaken or admission's Refused."""
        state = await self.jobs.get(env.tenant, env.job_id)
        if state is not None and state.request and state.request != request_fingerprint(env.data):
            raise JobTaken(f"job {env.job_id} exists already with another request: this one is not run")
        if state is not None and state.status in FROZEN:
            return "skip"
        if deliveries == 1:
            await self.admission.admit(env.tenant, env.job_id, cost_of(env.data))
            self.kinds[(env.tenant, env.job_id)] = table.JOB_KIND_OF[env.type]
            if len(self.kinds) > 2 * len(self.admission.unfinished()) + 64:  # ends missed while away: forgotten with them
                running = set(self.admission.unfinished())
                self.kinds = {key: kind for key, kind in self.kinds.items() if key in running}
        return "run"

    async def follow_ends(self, nc: Client, streams: set[str]) -> None:
        """Count a job as finished when its end goes by (core NATS: no consumer, nothing to ack)."""

        async def on_end(msg: Any) -> None:
            try:
                env = _header.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return
            kind = self.kinds.get((env.tenant, env.job_id))
            if kind is not None and ends_job(kind, env.type):  # a merge's registration does not end the merge
                self.admission.finished(env.tenant, env.job_id)
                del self.kinds[(env.tenant, env.job_id)]

        for stream in sorted(streams):
            for s in table.job_ends(stream):
                await nc.subscribe(s.filter, cb=on_end)
