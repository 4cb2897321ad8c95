"""Tenant-owned models, shared by the owner's grant: private by default, a new version changes
nothing for others, derived copies are usable but not exportable, and revocation reaches them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from maskline.client import ApiError, JsonClient
from maskline.models.starter import WEIGHTS, shapes
from tests.e2e.conftest import audited_trail
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e
LABELS = list(shapes.LABELS)


def image() -> bytes:
    return png_bytes(shapes.sample(np.random.default_rng(3030), 96)[0])


def refused(call, status: int) -> dict:  # type: ignore[no-untyped-def]
    with pytest.raises(ApiError) as err:
        call()
    assert err.value.status == status, err.value.problem
    return err.value.problem


def test_a_model_of_the_same_name_changes_nothing_for_other_tenants(client: JsonClient, other_tenant: JsonClient) -> None:
    before = client.submit(image(), wait=60)["model"]
    assert before == {
        "name": "shapes-unet",
        "version": 1,
        "precision": "fp32",
        "owner": "maskline",
        "alias": "stable",
        "canary": False,
    }
    mine = other_tenant.register_model(WEIGHTS, name="shapes-unet", labels=LABELS, input_size=(128, 128))
    assert mine["owner"] == "tenant-b" and mine["version"] == 1
    time.sleep(6)  # longer than any resolution cache
    assert client.submit(image(), wait=60)["model"] == before  # tenant-a still runs the platform's model
    assert other_tenant.submit(image(), wait=60)["model"]["owner"] == "tenant-b"  # the owner runs its own


def test_private_models_are_invisible_until_shared(client: JsonClient, other_tenant: JsonClient) -> None:
    other_tenant.register_model(WEIGHTS, name="b-private", labels=LABELS, input_size=(128, 128))
    assert not [m for m in client.models() if m["name"] == "b-private"]
    assert {m["owner"] for m in client.models()} <= {"tenant-a", "maskline"}
    refused(lambda: client.get_model("b-private", 1, owner="tenant-b"), 404)
    refused(lambda: client.merge_models([("b-private", 1), ("b-private", 1)], name="stolen"), 404)
    body = {"models": [{"name": "b-private", "version": 1, "owner": "tenant-b"}] * 2, "name": "stolen", "method": "avg"}
    assert client.http.post("/v1/models/merges", json=body).status_code == 404
    quantize = {"model": {"name": "b-private", "version": 1, "owner": "tenant-b"}, "dataset": "anything"}
    assert client.http.post("/v1/models/quantizations", json=quantize).status_code == 404
    with pytest.raises(ApiError) as err:
        client.submit(image(), wait=60, model="b-private", owner="tenant-b")
    assert err.value.problem["code"] == "model_not_found"


def test_a_shared_model_is_used_not_copied_and_revocation_reaches_copies(client: JsonClient, other_tenant: JsonClient) -> None:
    other_tenant.register_model(WEIGHTS, name="b-shared", labels=LABELS, input_size=(128, 128))
    # tenant-a asks, tenant-b grants: each step is an audited event.
    asked = client.request_access("tenant-b", "b-shared", note="for our study")
    assert asked["state"] == "requested"
    refused(lambda: client.decide_access("b-shared", "tenant-a", "granted"), 404)  # only the owner decides
    granted = other_tenant.decide_access("b-shared", "tenant-a", "granted")
    assert granted["state"] == "granted"
    assert {(g["owner"], g["model"], g["state"]) for g in client.access()} >= {("tenant-b", "b-shared", "granted")}
    trail = audited_trail(other_tenant, "/v1/models/b-shared/access/tenant-a/trail", lambda t: len(t) >= 2)
    assert [r["event"]["data"]["state"] for r in trail][-2:] == ["requested", "granted"]

    # Using it: serving and deriving work, with the owner named.
    job = client.submit(image(), wait=60, model="b-shared", owner="tenant-b")
    assert job["status"] == "completed" and job["model"]["owner"] == "tenant-b"
    assert client.get_model("b-shared", 1, owner="tenant-b")["owner"] == "tenant-b"
    body = {"models": [{"name": "b-shared", "version": 1, "owner": "tenant-b"}] * 2, "name": "a-copy", "method": "avg"}
    merged = client.wait_job(client.http.post("/v1/models/merges", json=body).json()["id"], timeout=120)
    assert merged["status"] == "completed", merged
    copy = client.http.get(merged["links"]["model"]).json()
    assert copy["owner"] == "tenant-a" and copy["upstream"] == ["tenant-b/b-shared"]
    # ...but not copying it out: neither the original's weights nor the merged "copy".
    refused(lambda: client.download_file("models", "b-shared/1"), 404)
    problem = refused(lambda: client.download_file("models", f"a-copy/{copy['version']}"), 403)
    assert problem["code"] == "not_exportable" and "tenant-b/b-shared" in problem["detail"]
    listing = {f["path"]: f for f in client.files("models")["files"]}
    assert listing[f"a-copy/{copy['version']}"]["exportable"] is False
    assert client.submit(image(), wait=60, model="a-copy")["status"] == "completed"

    # The owner revokes: the shared model and every copy made from it stop working for tenant-a.
    assert other_tenant.decide_access("b-shared", "tenant-a", "revoked")["state"] == "revoked"
    time.sleep(6)  # grants are cached for at most 5 s
    for model, owner in (("b-shared", "tenant-b"), ("a-copy", None)):
        with pytest.raises(ApiError) as err:
            client.submit(image(), wait=60, model=model, owner=owner)
        assert err.value.problem["code"] == "model_not_found", (model, err.value.problem)


def test_a_new_version_changes_what_anyone_gets_only_when_the_owner_releases_it(
    client: JsonClient, other_tenant: JsonClient
) -> None:
    first = other_tenant.register_model(WEIGHTS, name="b-release", labels=LABELS, input_size=(128, 128))
    client.request_access("tenant-b", "b-release")
    other_tenant.decide_access("b-release", "tenant-a", "granted")
    assert client.submit(image(), wait=60, model="b-release", owner="tenant-b")["model"]["version"] == first["version"]
    second = other_tenant.register_model(WEIGHTS, name="b-release", labels=LABELS, input_size=(128, 128))
    time.sleep(6)
    assert client.submit(image(), wait=60, model="b-release", owner="tenant-b")["model"]["version"] == first["version"]
    # the owner too: a new version runs only once promoted
    assert other_tenant.submit(image(), wait=60, model="b-release")["model"]["version"] == first["version"]
    other_tenant.release_model("b-release", second["version"])
    time.sleep(6)
    assert client.submit(image(), wait=60, model="b-release", owner="tenant-b")["model"]["version"] == second["version"]
