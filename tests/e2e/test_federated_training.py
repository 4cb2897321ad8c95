"""Federated sites that train through maskline (issue 30, item 5): two sites consent to train every
round of tenant-a's federation on their own digits datasets; each round opens a training job of each
site's own tenant, whose weights go to the round as the site's update, and the rounds merge as for
uploaded updates. Site B starts round 1 from its own initialisation (the study's independent set-up).
The data never leaves a site: the owner cannot read a site's run, a tenant that is not a site cannot
enrol, and one that forges a site's training on the bus is refused by the train service."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from sklearn.datasets import load_digits

from maskline.client import ApiError, JsonClient
from maskline.contracts import train_v1
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.stack import Stack
from maskline.models.digits import LABELS, DigitsSegmenter
from maskline.shared import keys
from tests.e2e.test_segmentation import png_bytes
from tests.e2e.test_trust_seams import envelope, publish

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
OWNER = "tenant-a"
ARCHITECTURE = "maskline.models.digits:DigitsSegmenter"
HYPER = {"steps": 30, "batch": 16, "learning_rate": 5e-3, "optimiser": "adam", "weight_decay": 0.0}
HYPER |= {"schedule": "constant", "validation_share": 0.0, "flip": False}


def digits() -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    data = load_digits()
    return (data.images * (255.0 / 16.0)).round().astype(np.uint8), data.target.astype(np.uint8)


def upload_digits(site: JsonClient, name: str, images: NDArray[np.uint8], labels: NDArray[np.uint8]) -> None:
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        site.upload_dataset_file(name, "images", png_bytes(np.repeat(image[:, :, None], 3, axis=2)), f"d{i}.png")
        site.upload_dataset_file(name, "masks", png_bytes(np.full((8, 8), label, np.uint8)), f"d{i}.png")


def accuracy(weights: bytes, images: NDArray[np.uint8], labels: NDArray[np.uint8]) -> float:
    module = torch.jit.load(io.BytesIO(weights)).eval()  # type: ignore[no-untyped-call]
    x = torch.from_numpy(np.repeat(images[:, None], 3, axis=1).astype(np.float32) / 255.0)
    with torch.no_grad():
        return float((module(x)[:, :, 0, 0].argmax(1).numpy() == labels).mean())


@pytest.fixture(scope="module")
def third_site(stack: Stack) -> Iterator[JsonClient]:
    c = JsonClient(stack.gateway_url, api_key="key-c", timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def start_model(client: JsonClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    torch.manual_seed(0)
    path = Path(tmp_path_factory.mktemp("digits")) / "digits.pt"
    torch.jit.save(torch.jit.script(DigitsSegmenter().eval()), str(path))
    model = client.register_model(path, name="fed-digits", labels=list(LABELS), input_size=(8, 8), architecture=ARCHITECTURE)
    return {"name": model["name"], "version": model["version"]}


@pytest.fixture(scope="module")
def site_datasets(other_tenant: JsonClient, third_site: JsonClient) -> None:
    images, labels = digits()
    upload_digits(other_tenant, "digits-b", images[0:120:2], labels[0:120:2])
    upload_digits(third_site, "digits-c", images[1:120:2], labels[1:120:2])


def test_sites_train_every_round_through_maskline_and_the_rounds_merge(
    stack: Stack,
    client: JsonClient,
    other_tenant: JsonClient,
    third_site: JsonClient,
    start_model: dict[str, Any],
    site_datasets: None,
) -> None:
    images, labels = digits()
    test_images, test_labels = images[1200:1500], labels[1200:1500]

    view = client.start_federation(
        name="fed-digits-global", model=start_model, sites=["tenant-b", "tenant-c"], rounds=2, method="weighted", deadline_s=300
    )
    federation = view["id"]
    with pytest.raises(ApiError) as err:  # the owner cannot train for a site
        client.enrol_federation_training(federation, owner=OWNER, dataset="digits-b")
    assert (err.value.status, err.value.problem["code"]) == (404, "federation_not_found")

    b = other_tenant.enrol_federation_training(
        federation,
        owner=OWNER,
        dataset="digits-b",
        hyperparameters=HYPER | {"seed": 1},
        architecture={"entrypoint": ARCHITECTURE},
    )
    c = third_site.enrol_federation_training(federation, owner=OWNER, dataset="digits-c", hyperparameters=HYPER | {"seed": 2})
    assert b["job"] == c["job"] == keys.site_training_job(OWNER, federation, 1)  # round 1 is open: its training starts now
    assert b["training"]["dataset"] == "datasets/tenant-b/digits-b/"

    wait_until(lambda: client.federation(federation)["status"] != "running", 300, "the federation ended")
    view = client.federation(federation)
    assert view["status"] == "completed", view
    for r in view["history"]:
        assert {(s["site"], s["samples"]) for s in r["reported"]} == {("tenant-b", 60), ("tenant-c", 60)}
        assert all("train_loss" in s["metrics"] for s in r["reported"])

    # Each round's training is a job of the site's own, with its run record; the owner sees neither.
    for site, tenant in ((other_tenant, "tenant-b"), (third_site, "tenant-c")):
        for round_ in (1, 2):
            job = site.job(keys.site_training_job(OWNER, federation, round_))
            assert (job["kind"], job["status"]) == ("training", "completed"), job
            run = site.http.get(f"/v1/runs/{job['id']}").json()
            assert run["model"] is None and run["update"]["site"] == tenant and run["update"]["round"] == round_
            assert run["request"]["federation"] == {"federation": federation, "owner": OWNER, "round": round_}
            assert run["images"] == 60 and run["dataset"] == f"datasets/{tenant}/digits-{tenant[-1]}/"
            with pytest.raises(ApiError) as err:
                client.job(job["id"])
            assert err.value.status == 404
            assert client.http.get(f"/v1/runs/{job['id']}").status_code == 404
    first_b = other_tenant.http.get(f"/v1/runs/{keys.site_training_job(OWNER, federation, 1)}").json()
    assert first_b["architecture"]["entrypoint"] == ARCHITECTURE and first_b["base"] is None  # its own initialisation
    second_b = other_tenant.http.get(f"/v1/runs/{keys.site_training_job(OWNER, federation, 2)}").json()
    assert second_b["base"] == view["history"][0]["model"]  # later rounds: from the merged global model
    assert second_b["hyperparameters"]["seed"] == 2  # the site's seed plus the round less one

    start = accuracy(client.download_file("models", f"{start_model['name']}/{start_model['version']}"), test_images, test_labels)
    last = view["history"][-1]["model"]
    merged = accuracy(client.download_file("models", f"{last['name']}/{last['version']}"), test_images, test_labels)
    assert start < 0.2 and merged > 0.5, (start, merged)  # learnt from both sites' 60 digits each, through the rounds

    assert other_tenant.federation_training(federation, owner=OWNER)["training"]["dataset"] == "datasets/tenant-b/digits-b/"
    other_tenant.withdraw_federation_training(federation, owner=OWNER)
    with pytest.raises(ApiError) as err:
        other_tenant.federation_training(federation, owner=OWNER)
    assert err.value.problem["code"] == "not_enrolled"


def test_a_site_that_withdraws_its_consent_sends_the_round_nothing(
    client: JsonClient, other_tenant: JsonClient, start_model: dict[str, Any], site_datasets: None
) -> None:
    view = client.start_federation(name="fed-digits-withdrawn", model=start_model, sites=["tenant-b"], rounds=1, deadline_s=300)
    federation = view["id"]
    long = HYPER | {"steps": 3000}  # seconds of training: the withdrawal lands while it runs (or before)
    job = other_tenant.enrol_federation_training(federation, owner=OWNER, dataset="digits-b", hyperparameters=long)["job"]
    other_tenant.withdraw_federation_training(federation, owner=OWNER)
    wait_until(lambda: status(other_tenant, job) == "failed", 300, "the withdrawn training failed")
    assert other_tenant.job(job)["error"]["code"] == "consent_withdrawn"
    assert client.federation(federation)["history"][0]["reported"] == []
    client.stop_federation(federation)


def test_a_tenant_that_is_not_a_site_cannot_train_for_the_round(
    stack: Stack, client: JsonClient, third_site: JsonClient, start_model: dict[str, Any]
) -> None:
    view = client.start_federation(name="fed-digits-closed", model=start_model, sites=["tenant-b"], rounds=1, deadline_s=300)
    federation = view["id"]
    with pytest.raises(ApiError) as err:  # over HTTP: as if the run did not exist
        third_site.enrol_federation_training(federation, owner=OWNER, dataset="digits-c")
    assert (err.value.status, err.value.problem["code"]) == (404, "federation_not_found")

    # On the bus, tenant-c's own identity asks for a site's training of that round: refused by the
    # train service (it is not a site), and nothing reaches the round.
    job_id = f"forged-{uuid.uuid4().hex[:8]}"
    seat = train_v1.FederationSeat(federation=federation, owner=OWNER, round=1)
    request = train_v1.TrainRequested(name="x", dataset="datasets/tenant-c/digits-c/", federation=seat)
    body = envelope(train_v1.TRAIN_REQUESTED, "tenant-c", job_id, msgspec.to_builtins(request))
    asyncio.run(publish(stack, "partner-c", f"{train_v1.TRAIN_REQUESTED}.tenant-c", body))
    wait_until(lambda: status(third_site, job_id) == "failed", 120, "the forged training failed")
    assert third_site.job(job_id)["error"]["code"] == "federation_not_found"
    assert client.federation(federation)["history"][0]["reported"] == []
    client.stop_federation(federation)


def status(site: JsonClient, job_id: str) -> str:
    try:
        return str(site.job(job_id)["status"])
    except ApiError as exc:
        if exc.status != 404:
            raise
        return "unknown"  # its first event not recorded yet
