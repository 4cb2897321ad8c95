"""Finished runs logged to a real MLflow tracking server (`mlflow server`, SQLite behind it, started
by the session): params, curves as metric histories, tags, one experiment per tenant; logged once however
often a job is delivered; a server that does not answer is a dependency outage, not a failure."""

from __future__ import annotations

import msgspec
import pytest

from maskline.contracts import train_v1
from maskline.contracts.examples import PAYLOADS
from maskline.infra.embedded.process import free_port
from maskline.services.train.mlflow_log import MlflowLog, experiment_name
from maskline.shared.errors import DependencyUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
EXAMPLE = PAYLOADS[train_v1.TRAINED]
assert isinstance(EXAMPLE, train_v1.Trained)
RUN = EXAMPLE.run


def test_a_finished_run_is_logged_whole_and_once(mlflow_server: str) -> None:
    mlflow = MlflowLog(mlflow_server)
    run_id = mlflow.log(RUN)
    assert mlflow.log(RUN) == run_id  # a redelivered job: found by its tag, not logged again

    client = mlflow.client
    experiment = client.get_experiment_by_name(experiment_name(RUN))
    assert experiment is not None and experiment.name == f"{RUN.tenant}/{RUN.experiment}"
    assert len(client.search_runs([experiment.experiment_id])) == 1
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["maskline.run"] == RUN.run and logged.data.tags["maskline.tenant"] == RUN.tenant
    assert logged.data.tags["maskline.model"] == f"{RUN.tenant}/roads/5"
    params = logged.data.params
    assert params["hyper.learning_rate"] == str(RUN.hyperparameters.learning_rate)
    assert params["hyper.seed"] == str(RUN.hyperparameters.seed)
    assert params["dataset_sha256"] == RUN.dataset_sha256 and params["base"] == f"{RUN.tenant}/roads/3"
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(p.step, p.loss) for p in RUN.curve]
    assert logged.data.metrics["train_loss"] == RUN.train_loss
    assert logged.data.metrics["validation_miou"] == RUN.curve[-1].validation_miou


def test_tenants_runs_land_in_experiments_of_their_own(mlflow_server: str) -> None:
    other = msgspec.structs.replace(RUN, tenant="beta", run="beta-run-1")
    mlflow = MlflowLog(mlflow_server)
    mlflow.log(other)
    beta = mlflow.client.get_experiment_by_name(f"beta/{RUN.experiment}")
    assert beta is not None
    runs = mlflow.client.search_runs([beta.experiment_id])
    assert [r.data.tags["maskline.run"] for r in runs] == ["beta-run-1"]


def test_a_server_that_does_not_answer_is_an_outage_to_wait_for() -> None:
    mlflow = MlflowLog(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(DependencyUnavailable) as outage:
        mlflow.log(RUN)
    assert outage.value.dependency == "mlflow"


def test_a_log_cut_short_is_made_again_whole(mlflow_server: str) -> None:
    cut = msgspec.structs.replace(RUN, run="cut-short-1", experiment="cuts")
    mlflow = MlflowLog(mlflow_server)
    client = mlflow.client
    experiment_id = client.create_experiment(experiment_name(cut))
    client.create_run(experiment_id, tags={"maskline.run": cut.run})  # a worker died here, before the metrics
    run_id = mlflow.log(cut)
    runs = client.search_runs([experiment_id])
    assert [(r.info.run_id, r.info.status) for r in runs] == [(run_id, "FINISHED")]
    assert len(client.get_metric_history(run_id, "loss")) == len(cut.curve)
