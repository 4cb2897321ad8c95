"""Job state folded from the events audit records: the one place job state is written from events
(the gateway reads it through a watch). Audit already reads every message of every stream, so
folding them here costs no further delivery."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from maskline.contracts import subjects as table
from maskline.contracts.audit_v1 import record_subject
from maskline.contracts.envelope import Envelope
from maskline.shared.bus import tenant_token
from maskline.shared.jobs.state import PAYLOADS, STATUS_OF, JobState, JobStore


class Projection:
    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs
        self._decoders = {type_: msgspec.json.Decoder(Envelope[payload]) for type_, payload in PAYLOADS.items()}  # type: ignore[valid-type]

    def job_event(self, subject: str, data: bytes) -> Envelope[Any] | None:
        """The job event a message is, to fold into its job's state. What no contract decodes, or an
        envelope whose tenant the subject does not back, changes no state (its consumer dead-letters it)."""
        decoder = self._decoders.get(subject.rsplit(".", 1)[0])
        if decoder is None:
            return None
        try:
            env = decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None
        return env if env.tenant == tenant_token(subject) else None

    @staticmethod
    def record_key(subject: str, env: Envelope[Any] | None) -> tuple[str, bool]:
        """The record subject a message (and its job event, if it is one) belongs on, and whether it
        must be recorded at once: all but a job event that does not end its job (those wait to be
        recorded with the job's last)."""
        if env is None:
            return subject, True  # one record of its own, as it came
        return record_subject(env.tenant, env.job_id), STATUS_OF[env.type] in table.FINAL_STATUSES

    async def fold(self, messages: list[tuple[str, bytes]]) -> None:
        """Fold the job events among a batch of (subject, data) into their jobs' states."""
        await self.fold_events([e for subject, data in messages if (e := self.job_event(subject, data)) is not None])

    async def fold_events(self, events: list[Envelope[Any]]) -> dict[tuple[str, str], JobState]:
        """Fold decoded job events into their jobs' states: one write per job, however many of its
        events came in the batch. Returns each job's state after the fold, by (tenant, job id)."""
        by_job: dict[tuple[str, str], list[Envelope[Any]]] = {}
        for env in events:
            by_job.setdefault((env.tenant, env.job_id), []).append(env)
        states = await asyncio.gather(*(self.jobs.apply_all(envs) for envs in by_job.values()))
        return dict(zip(by_job, states, strict=True))
