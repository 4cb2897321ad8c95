"""Finished runs logged to an MLflow tracking server, when one is configured
(`MASKLINE_MLFLOW_TRACKING_URI`), through MLflow's own client (`mlflow-skinny`): a consumer of its
own on `model.v1.trained`, so logging never holds a training up.

A run goes in once, whole, when its record is written: its hyper-parameters and where it came from
as params, its curve as metric histories by step, its final numbers, and tags that name it in
maskline (tenant, run, version). Experiments are per tenant (`<tenant>/<experiment>`, or
`<tenant>/default`): one tracking server may serve every tenant without mixing their runs, and the
server's own access control decides who reads them there. Logging is idempotent (a run already
tagged with its job id and finished is not logged again; one cut short is deleted and logged whole),
so a redelivered event logs nothing twice; a server that does not answer pauses this consumer
(`DependencyUnavailable`) rather than losing the log, and the trainings go on.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from maskline.contracts.envelope import Envelope
from maskline.contracts.train_v1 import Trained, TrainingRun
from maskline.shared.errors import DependencyUnavailable

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = structlog.get_logger("mlflow")
#: Tags that tie an MLflow run to maskline's.
RUN_TAG = "maskline.run"
TENANT_TAG = "maskline.tenant"
#: MLflow's client retries a refused connection for minutes by default; the consumer's own pause and
#: retry is the one policy here (decision 0015), so the client gives up quickly.
_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def experiment_name(run: TrainingRun) -> str:
    return f"{run.tenant}/{run.experiment or 'default'}"


def params(run: TrainingRun) -> dict[str, str]:
    """Everything that made the run, flat, as MLflow's params (strings)."""
    found = {f"hyper.{k}": str(v) for k, v in msgspec.to_builtins(run.hyperparameters).items()}
    found |= {"dataset": run.dataset, "dataset_sha256": run.dataset_sha256, "images": str(run.images)}
    found |= {"code_version": run.code_version, "torch": run.torch, "device": run.device}
    if run.base is not None:
        found["base"] = f"{run.base.owner}/{run.base.name}/{run.base.version}"
    if run.architecture is not None:
        found["architecture"] = run.architecture.entrypoint
    if run.request.federation is not None:
        seat = run.request.federation
        found["federation"] = f"{seat.owner}/{seat.federation}/round {seat.round}"
    return found


def tags(run: TrainingRun) -> dict[str, str]:
    found = {RUN_TAG: run.run, TENANT_TAG: run.tenant, "mlflow.runName": run.run}
    if run.model is not None:
        found["maskline.model"] = f"{run.model.owner}/{run.model.name}/{run.model.version}"
    if run.reproduces:
        found["maskline.reproduces"] = run.reproduces
    return found


class MlflowLog:
    def __init__(self, tracking_uri: str) -> None:
        for name, value in _CLIENT_ENV.items():
            os.environ.setdefault(name, value)
        from mlflow.tracking import MlflowClient  # only a worker that logs imports the client

        self.client: MlflowClient = MlflowClient(tracking_uri)
        self.tracking_uri = tracking_uri

    def log(self, run: TrainingRun) -> str:
        """The MLflow run id of `run` (logged now, or found from an earlier delivery). Blocking: call
        it from a thread."""
        try:
            return self._log(run)
        except Exception as exc:  # MLflow raises its own and requests' errors alike
            if _unreachable(exc):
                raise DependencyUnavailable(f"MLflow at {self.tracking_uri}: {exc}", dependency="mlflow") from exc
            raise

    def _log(self, run: TrainingRun) -> str:
        from mlflow.entities import Metric, Param, RunTag

        name = experiment_name(run)
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else self.client.create_experiment(name)
        for found in self.client.search_runs([experiment_id], f"tags.`{RUN_TAG}` = '{run.run}'"):
            if found.info.status == "FINISHED":
                return str(found.info.run_id)
            self.client.delete_run(found.info.run_id)  # a log cut short: made again whole
        created = self.client.create_run(experiment_id, start_time=int(run.created.timestamp() * 1000), tags=tags(run))
        run_id = str(created.info.run_id)
        at = int(time.time() * 1000)
        metrics = [Metric("loss", p.loss, at, p.step) for p in run.curve]
        metrics += [Metric("learning_rate", p.learning_rate, at, p.step) for p in run.curve]
        metrics += [Metric("validation_miou", p.validation_miou, at, p.step) for p in run.curve if p.validation_miou is not None]
        last = run.curve[-1].step if run.curve else 0
        metrics.append(Metric("train_loss", run.train_loss, at, last))
        metrics.append(Metric("seconds", run.seconds, at, last))
        param_list = [Param(k, v) for k, v in params(run).items()]
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow takes 1000 metrics a batch
            batch: dict[str, Any] = {"metrics": metrics[start : start + 1000]}
            if start == 0:
                batch |= {"params": param_list, "tags": [RunTag(k, v) for k, v in tags(run).items()]}
            self.client.log_batch(run_id, **batch)
        self.client.set_terminated(run_id, "FINISHED")
        return run_id


class MlflowLogging:
    """The `model.v1.trained` handler: each finished run to MLflow, or nothing when none is configured."""

    def __init__(self, tracking_uri: str) -> None:
        self.mlflow = MlflowLog(tracking_uri) if tracking_uri else None

    async def on_trained(self, env: Envelope[Trained]) -> list[Envelope[Any]]:
        if self.mlflow is not None:
            mlflow_run = await asyncio.to_thread(self.mlflow.log, env.data.run)
            log.info("train.logged_to_mlflow", job_id=env.job_id, mlflow_run=mlflow_run)
        return []


def _unreachable(exc: BaseException) -> bool:
    """A server that did not answer (refused, timed out, 5xx after the client's retries), not a refusal."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        text = str(seen)
        if "Max retries exceeded" in text or ("API request to" in text and "failed with exception" in text):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
