"""Training through the running stack: the starter model fine-tuned on shapes under sensor noise
(where it scores poorly) gets better on held-out noisy shapes and registers a version with its
whole story (also logged to an MLflow tracking server); a run is reproduced exactly from its
record; a worker killed mid-run resumes from its checkpoint and ends exactly where an uninterrupted
run does; a cancel stops a run; a tenant cannot fine-tune another tenant's private model; an
architecture trains from scratch."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from tests.e2e.accessibility import violations
from tests.e2e.conftest import Account, audited_trail, cli, recorded, sign_in, until
from tests.e2e.test_segmentation import png_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # trainings take minutes on 2 cores
STARTER = {"name": "shapes-unet", "version": 1, "owner": "maskline"}
NOISE = 60.0
"""Standard deviation of the pixel noise: the starter's mIoU falls from 0.95 to about 0.22."""


def noisy_shapes(seed: int, count: int) -> list[tuple[bytes, bytes]]:
    images, masks = shapes.batch(np.random.default_rng(seed), count, 128)
    noise = np.random.default_rng(seed + 1).normal(0.0, NOISE, images.shape)
    noisy = np.clip(images.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return [(png_bytes(image), png_bytes(mask)) for image, mask in zip(noisy, masks, strict=True)]


@pytest.fixture(scope="module")
def datasets(client: JsonClient) -> tuple[str, str]:
    for name, seed, count in (("tr-noisy", 11, 40), ("tr-noisy-held", 977, 12)):
        for i, (image, mask) in enumerate(noisy_shapes(seed, count)):
            client.upload_dataset_file(name, "images", image, f"n{i}.png")
            client.upload_dataset_file(name, "masks", mask, f"n{i}.png")
    return "tr-noisy", "tr-noisy-held"


def start(client: JsonClient, datasets: tuple[str, str], **changes: Any) -> dict[str, Any]:
    hyper = {"steps": 80, "batch": 8, "learning_rate": 2e-3, "validate_every": 20, "seed": 3, **changes.pop("hyper", {})}
    body = {"name": "shapes-noisy", "dataset": datasets[0], "base": STARTER, "hyperparameters": hyper, **changes}
    return client.train(**body)


def steps_done(client: JsonClient, job_id: str) -> int:
    """Steps a training reported so far (0 before its job exists)."""
    try:
        return int(client.job(job_id)["progress"].get("done", 0))
    except ApiError as exc:
        if exc.status != 404:
            raise
        return 0


def finished(client: JsonClient, job_id: str, timeout: float = 600) -> dict[str, Any]:
    done = client.wait_job(job_id, timeout=timeout)
    assert done["status"] == "completed", done
    return done


@pytest.fixture(scope="module")
def fine_tuned(client: JsonClient, datasets: tuple[str, str]) -> dict[str, Any]:
    job = start(client, datasets, evaluate_on=datasets[1], experiment="noise")
    assert job["kind"] == "training" and job["status"] == "requested"
    done = finished(client, job["id"])
    assert done["progress"] == {"done": 80, "total": 80}
    return done


def test_fine_tuning_on_noisy_shapes_improves_the_held_out_miou(
    client: JsonClient, datasets: tuple[str, str], fine_tuned: dict[str, Any]
) -> None:
    before = client.wait_job(client.evaluate("shapes-unet", 1, dataset=datasets[1], owner="maskline")["id"], timeout=300)
    assert before["status"] == "completed"
    starter = client.evaluations("shapes-unet", 1, owner="maskline")[0]
    run = client.run(fine_tuned["id"])
    version = run["model"]["version"]
    evaluation = finished(client, recorded(client, f"{fine_tuned['id']}-eval"), timeout=300)
    assert evaluation["kind"] == "evaluation"
    after = client.evaluations("shapes-noisy", version)[0]
    assert after["dataset_sha256"] == starter["dataset_sha256"]  # the same held-out images
    print(f"held-out mIoU under noise: starter {starter['miou']:.4f}, fine-tuned {after['miou']:.4f}")
    assert after["miou"] > starter["miou"] + 0.1
    listed = [r for r in client.runs("noise") if r["run"] == fine_tuned["id"]]
    assert listed and listed[0]["evaluation_miou"] == after["miou"]


def test_the_version_carries_its_whole_story(client: JsonClient, datasets: tuple[str, str], fine_tuned: dict[str, Any]) -> None:
    run = client.run(fine_tuned["id"])
    assert run["base"] == STARTER and run["dataset"].endswith(f"/{datasets[0]}/") and len(run["dataset_sha256"]) == 64
    assert run["images"] == 40 and run["validation_images"] == 8  # 20% held out of training
    assert run["hyperparameters"]["steps"] == 80 and run["hyperparameters"]["seed"] == 3
    assert run["code_version"] and run["torch"].startswith("2.") and run["device"] == "cpu"
    assert [p["step"] for p in run["curve"]] == [20, 40, 60, 80]
    assert all(p["validation_miou"] is not None for p in run["curve"])
    assert run["curve"][-1]["loss"] < run["curve"][0]["loss"]
    model = client.http.get(f"/v1/models/shapes-noisy/{run['model']['version']}").json()
    assert model["parent"] == "shapes-unet/1" and model["job_id"] == fine_tuned["id"]
    assert {"name": "shapes-unet", "version": 1, "owner": "maskline"} in model["lineage"]
    assert model["metrics"]["validation_miou"] == run["validation_miou"]
    types = [
        r["type"] for r in audited_trail(client, f"/v1/audit?job={fine_tuned['id']}", lambda t: len(t["events"]) >= 4)["events"]
    ]
    assert types[0] == "model.v1.train.requested" and "model.v1.train.progressed" in types and "model.v1.trained" in types


def test_the_run_is_logged_to_the_configured_mlflow_server(
    client: JsonClient, mlflow_server: str, fine_tuned: dict[str, Any]
) -> None:
    from mlflow.tracking import MlflowClient

    record = client.run(fine_tuned["id"])
    tracking = MlflowClient(mlflow_server)
    experiment = tracking.get_experiment_by_name("tenant-a/noise")  # the tenant's own experiment
    assert experiment is not None
    logged = tracking.search_runs([experiment.experiment_id], f"tags.`maskline.run` = '{fine_tuned['id']}'")
    assert len(logged) == 1 and logged[0].info.status == "FINISHED"
    assert logged[0].data.params["hyper.steps"] == "80" and logged[0].data.params["base"] == "maskline/shapes-unet/1"
    assert logged[0].data.tags["maskline.model"] == f"tenant-a/shapes-noisy/{record['model']['version']}"
    history = sorted(tracking.get_metric_history(logged[0].info.run_id, "validation_miou"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(p["step"], p["validation_miou"]) for p in record["curve"]]


def test_the_experiments_page_lists_the_runs_and_draws_their_curves(
    browser: WebDriver, stack: Stack, fine_tuned: dict[str, Any], console_owner: Account
) -> None:
    sign_in(browser, stack, console_owner, "/experiments?experiment=noise")
    until(browser, lambda: fine_tuned["id"][:12] in browser.find_element(By.ID, "runs").text, 30, "the run in the table")
    until(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#loss canvas, #validation canvas")) == 2, 30, "two charts")
    assert browser.find_element(By.ID, "error").text == ""
    legends = browser.find_element(By.ID, "validation").text
    assert "validation mIoU" in legends and fine_tuned["id"][:12] in legends  # uPlot's title and legend
    assert violations(browser) == []


def test_a_run_is_reproduced_exactly_from_its_record(stack: Stack, fine_tuned: dict[str, Any]) -> None:
    done = cli(stack, "runs", "reproduce", fine_tuned["id"], "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    view = json.loads(done.stdout)
    assert view["exact"] and view["reproduced"] and view["same_data"] and view["max_difference"] == 0.0
    assert view["runs"][1]["reproduces"] == fine_tuned["id"] and view["differing"] == {}


def test_a_worker_killed_mid_training_resumes_from_its_checkpoint(
    stack: Stack, client: JsonClient, datasets: tuple[str, str]
) -> None:
    job = start(client, datasets, hyper={"steps": 160, "validate_every": 40, "seed": 9}, checkpoint_every=10)
    deadline = time.monotonic() + 300
    while client.job(job["id"])["progress"].get("done", 0) < 40:
        assert time.monotonic() < deadline, client.job(job["id"])
        time.sleep(0.2)
    stack.kill_service("train")  # SIGKILL mid-run: the supervisor starts it again, the job comes back
    finished(client, job["id"])
    run = client.run(job["id"])
    assert run["resumes"] >= 1
    again = finished(client, client.reproduce(job["id"])["id"])  # the same run, never interrupted
    view = client.compare_runs([job["id"], again["id"]])
    assert view["exact"], view  # resumed from a checkpoint, it ends exactly where it would have


def test_a_cancelled_training_stops_and_leaves_no_version(client: JsonClient, datasets: tuple[str, str]) -> None:
    job = start(client, datasets, name="shapes-cancelled", hyper={"steps": 5000}, checkpoint_every=5)
    deadline = time.monotonic() + 300
    while client.job(job["id"])["progress"].get("done", 0) < 5:
        assert time.monotonic() < deadline, client.job(job["id"])
        time.sleep(0.2)
    assert client.cancel_training(job["id"])["status"] == "cancelled"
    with pytest.raises(ApiError) as err:
        client.cancel_training(job["id"])
    assert err.value.status == 409 and err.value.code == "job_finished"
    # the worker is free again: a short run after it completes
    finished(client, start(client, datasets, name="shapes-after-cancel", hyper={"steps": 2})["id"])
    assert client.job(job["id"])["status"] == "cancelled"
    assert not [m for m in client.models() if m["name"] == "shapes-cancelled"]
    assert job["id"] not in {r["run"] for r in client.runs()}


def test_a_tenant_cannot_fine_tune_another_tenants_private_model(client: JsonClient, datasets: tuple[str, str]) -> None:
    with pytest.raises(ApiError) as err:
        start(client, datasets, base={"name": "b-private", "version": 1, "owner": "tenant-b"})
    assert err.value.status == 404 and err.value.code == "model_not_found"
    with pytest.raises(ApiError) as err:  # neither a base nor an architecture
        client.train(name="x", dataset=datasets[0])
    assert err.value.status == 422


def test_an_architecture_trains_from_scratch(client: JsonClient, datasets: tuple[str, str]) -> None:
    job = client.train(
        name="shapes-scratch",
        dataset=datasets[0],
        architecture={"entrypoint": "maskline.models.starter.unet:UNet", "kwargs": {"classes": 4, "width": 8}},
        labels=list(shapes.LABELS),
        input_size=[128, 128],
        hyperparameters={"steps": 10, "batch": 4, "validate_every": 5},
    )
    run = client.run(finished(client, job["id"])["id"])
    assert run["base"] is None and run["architecture"]["entrypoint"] == "maskline.models.starter.unet:UNet"
    model = client.http.get(f"/v1/models/shapes-scratch/{run['model']['version']}").json()
    assert model["architecture"]["kwargs"] == {"classes": 4, "width": 8} and model["lineage"] == []
    refused = client.train(
        name="shapes-scratch",
        dataset=datasets[0],
        architecture={"entrypoint": "os.path:join"},
        labels=list(shapes.LABELS),
        input_size=[128, 128],
    )
    failed = client.wait_job(refused["id"], timeout=120)
    assert failed["status"] == "failed" and failed["error"]["code"] == "untrainable_model"


def test_a_sweep_samples_trials_with_optuna_and_prunes_a_weak_one(
    stack: Stack, client: JsonClient, datasets: tuple[str, str]
) -> None:
    training = {
        "name": "shapes-sweep",
        "dataset": datasets[0],
        "base": STARTER,
        "hyperparameters": {"steps": 40, "batch": 8, "validate_every": 10, "seed": 3},
    }
    job = client.sweep(
        training=training,
        space={"learning_rate": {"low": 1e-6, "high": 1e-2, "log": True}},
        trials=4,
        # two good settings first (the median rule needs two complete trials), then one that cannot learn in 40 steps
        start_with=[{"learning_rate": 3e-3}, {"learning_rate": 1e-3}, {"learning_rate": 1e-6}],
    )
    assert job["kind"] == "sweep"
    done = finished(client, job["id"], timeout=900)
    assert done["progress"] == {"done": 4, "total": 4}
    view = client.sweep_trials(job["id"])
    trials = view["trials"]
    assert [t["params"]["learning_rate"] for t in trials[:3]] == [3e-3, 1e-3, 1e-6]
    assert trials[0]["state"] == trials[1]["state"] == "complete"
    assert trials[2]["state"] == "pruned" and trials[2]["step"] < 40, trials[2]
    assert 1e-6 <= trials[3]["params"]["learning_rate"] <= 1e-2  # the sampler's own choice
    assert client.job(trials[2]["run"])["status"] == "cancelled"
    complete = [t for t in trials if t["state"] == "complete"]
    assert view["best"] == max(complete, key=lambda t: t["value"])
    assert done["links"]["model"] == f"/v1/models/shapes-sweep/{view['best']['model']['version']}"
    listed = {r["run"] for r in client.runs(view["experiment"])}
    assert listed == {t["run"] for t in complete}  # the pruned trial left no run
    print("sweep:", [(t["number"], t["params"], t["state"], t["value"], t["step"]) for t in trials])

    # The best is promoted by the alias rule, from the command line (audited like every promotion).
    promoted = cli(stack, "runs", "promote", job["id"], "best-lr", "--require-metric", "validation_miou")
    assert promoted.returncode == 0, promoted.stderr
    assert client.alias("shapes-sweep", "best-lr")["alias"]["version"] == view["best"]["model"]["version"]
    again = cli(stack, "runs", "promote", job["id"], "best-lr")
    assert again.returncode == 3 and "already runs version" in again.stderr, again.stderr  # 409 alias_unchanged


def test_cancelling_a_sweep_cancels_its_running_trial(client: JsonClient, datasets: tuple[str, str]) -> None:
    training = {"name": "shapes-sweep-cancelled", "dataset": datasets[0], "base": STARTER, "hyperparameters": {"steps": 5000}}
    job = client.sweep(training=training, space={"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}, trials=3)
    trial = f"{job['id']}-t0"
    deadline = time.monotonic() + 300
    while steps_done(client, trial) < 1:
        assert time.monotonic() < deadline, client.job(job["id"])
        time.sleep(0.2)
    assert client.cancel_training(job["id"])["status"] == "cancelled"
    assert client.wait_job(trial, timeout=120)["status"] == "cancelled"  # the driver stopped it
    assert not [m for m in client.models() if m["name"] == "shapes-sweep-cancelled"]
