"""Jobs that a finished job asks for: the evaluation of a merged or quantized version."""

from __future__ import annotations

from typing import Any

from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope, job_event
from maskline.contracts.model_v1 import EvaluateRequested, ModelVersion, VersionRef
from maskline.shared import keys


def evaluation(
    env: Envelope[Any], source: str, model: ModelVersion, dataset: str | None, *, what: str = "eval"
) -> list[Envelope[EvaluateRequested]]:
    """The command that evaluates `model` on `dataset` as job `<job id>-<what>` (none without a
    dataset). Its id is deterministic, so a redelivered job asks once; it keeps the job's trace."""
    if not dataset:
        return []
    request = EvaluateRequested(model=VersionRef(model.name, model.version, model.owner), dataset=dataset)
    return [
        job_event(
            model_v1.EVALUATE_REQUESTED,
            source,
            request,
            tenant=env.tenant,
            job_id=keys.follow_up_job(env.job_id, what),
            trace_id=env.trace_id,
        )
    ]
