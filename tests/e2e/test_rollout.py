"""Aliases and rollout through the running stack: a new version changes nothing until its owner
promotes it; promote and roll back are audited; a canary takes its share of jobs (the same side for
every attempt of a job); a shadow runs on a copy of the traffic and is compared, never returned."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from maskline.client import ApiError, JsonClient
from maskline.contracts.model_v1 import Alias
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import WEIGHTS, shapes
from maskline.shared.models.access import in_canary
from tests.e2e.conftest import audited_trail, cli
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e
LABELS = list(shapes.LABELS)
#: Infer caches what an alias resolves to for this long (LATEST_TTL_S): a change is seen after it.
SETTLE_S = 6.0


def image(seed: int = 0) -> bytes:
    return png_bytes(shapes.sample(np.random.default_rng(seed), 96)[0])


def noisy(tmp_path: Path, scale: float) -> Path:
    """The starter with noise on every weight: another version whose masks differ a little."""
    module = torch.jit.load(str(WEIGHTS))
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    path = tmp_path / f"noisy-{scale}.pt"
    module.save(str(path))
    return path


def register(client: JsonClient, name: str, weights: Path = WEIGHTS) -> int:
    return int(client.register_model(weights, name=name, labels=LABELS, input_size=(128, 128))["version"])


def served(client: JsonClient, name: str, **options: Any) -> dict[str, Any]:
    job = client.submit(image(), wait=60, model=name, **options)
    assert job["status"] == "completed", job.get("error")
    return dict(job["model"])


def test_a_new_version_runs_only_once_promoted_and_a_rollback_returns(client: JsonClient, stack: Stack) -> None:
    first = register(client, "ro-promote")
    second = register(client, "ro-promote")
    model = served(client, "ro-promote")
    assert (model["version"], model["alias"], model["canary"]) == (first, "stable", False)  # never simply the newest
    assert served(client, "ro-promote", version=second)["alias"] is None  # pinned

    promoted = client.promote("ro-promote", "stable", second)["alias"]
    assert (promoted["version"], promoted["history"]) == (second, [first])
    time.sleep(SETTLE_S)
    assert served(client, "ro-promote")["version"] == second
    rolled = client.rollback("ro-promote", "stable")["alias"]
    assert (rolled["version"], rolled["history"]) == (first, [])
    time.sleep(SETTLE_S)
    assert served(client, "ro-promote")["version"] == first
    with pytest.raises(ApiError) as err:
        client.rollback("ro-promote", "stable")
    assert (err.value.status, err.value.problem["code"]) == (409, "nothing_to_roll_back")

    # any name: a request names the alias
    client.promote("ro-promote", "candidate", second)
    assert served(client, "ro-promote", alias="candidate") == {**model, "version": second, "alias": "candidate"}
    with pytest.raises(ApiError) as err:
        served(client, "ro-promote", alias="nowhere")
    assert err.value.problem["code"] == "model_not_found"

    # each change is an audited event on the alias's own trail
    def actions(trail: list[dict[str, Any]]) -> list[str]:
        return [r["event"]["data"]["action"] for r in trail if r["type"] == "model.v1.alias.changed"]

    trail = audited_trail(client, "/v1/models/ro-promote/aliases/stable/trail", lambda t: len(actions(t)) >= 2)
    assert actions(trail) == ["promoted", "rolled-back"]
    assert all(r["event"]["data"]["alias"]["by"] == "tenant-a" for r in trail)

    listed = cli(stack, "alias", "list", "ro-promote")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        ["candidate", f"v{second}"],
        ["stable", f"v{first}"],
        ["stable-fp32", f"v{first}"],
    ]


def test_only_the_owner_moves_an_alias_and_a_served_version_is_kept(client: JsonClient, other_tenant: JsonClient) -> None:
    first = register(client, "ro-owner")
    second = register(client, "ro-owner")
    with pytest.raises(ApiError) as err:
        other_tenant.promote("ro-owner", "stable", second)  # its own (missing) model: another's is not disclosed
    assert (err.value.status, err.value.problem["code"]) == (404, "model_not_found")
    with pytest.raises(ApiError) as err:
        client.delete_file("models", f"ro-owner/{first}")
    assert err.value.problem["code"] == "model_in_service" and "stable" in err.value.problem["detail"]
    with pytest.raises(ApiError) as err:
        client.delete_alias("ro-owner", "stable")
    assert err.value.problem["code"] == "alias_required"
    with pytest.raises(ApiError) as err:  # the rule: the version's recorded metric must not be worse
        client.promote("ro-owner", "stable", second, require_metric="miou")
    assert (err.value.status, err.value.problem["code"]) == (409, "promotion_refused")
    assert "miou" in err.value.problem["detail"]


def test_a_canary_takes_its_share_of_jobs_by_job_id(client: JsonClient) -> None:
    first = register(client, "ro-canary")
    second = register(client, "ro-canary")
    view = client.rollout("ro-canary", "stable", canary=second, canary_percent=50.0)["alias"]
    alias = Alias(owner="tenant-a", model="ro-canary", name="stable", version=first, canary=second, canary_percent=50.0)
    assert (view["canary"], view["canary_percent"]) == (second, 50.0)
    time.sleep(SETTLE_S)
    jobs = [client.submit(image(i), wait=60, model="ro-canary") for i in range(16)]
    seen = set()
    for job in jobs:
        model = job["model"]
        assert model["canary"] == in_canary(job["id"], alias)  # the side is the job id's, every attempt alike
        assert model["version"] == (second if model["canary"] else first)
        seen.add(model["version"])
    assert seen == {first, second}
    # promoting the canary ends the split
    promoted = client.promote("ro-canary", "stable", second)["alias"]
    assert (promoted["canary"], promoted["canary_percent"]) == (None, 0.0)


def test_a_shadow_runs_on_a_copy_is_compared_and_never_returned(client: JsonClient, tmp_path: Path) -> None:
    first = register(client, "ro-shadow")
    shadow = register(client, "ro-shadow", noisy(tmp_path, 0.03))
    client.rollout("ro-shadow", "stable", shadow=shadow)
    time.sleep(SETTLE_S)
    jobs = [client.submit(image(i), wait=60, model="ro-shadow") for i in range(4)]
    assert all(job["model"]["version"] == first for job in jobs)  # the served masks are the alias's version's
    fetched = client.alias("ro-shadow", "stable")
    figures = fetched["shadow"]
    assert figures["version"] == shadow and figures["served"] == first and figures["jobs"] == 4
    assert 0.5 < figures["pixel_agreement"] < 1.0  # another network: close, not the same
    assert 0.0 < figures["min_pixel_agreement"] <= figures["pixel_agreement"]
    assert figures["shadow_ms"] > 0

    def compared() -> list[dict[str, Any]]:  # infer publishes the comparison; the audit records it moments later
        records = client.audit(jobs[0]["id"])["events"]
        return [r["event"]["data"] for r in records if r["type"] == "model.v1.shadow.compared"]

    wait_until(compared, 10, "the shadow comparison in the job's audit trail")
    assert len(compared()) == 1 and compared()[0]["shadow"] == shadow and compared()[0]["served"] == first

    with pytest.raises(ApiError) as err:  # the rule: enough shadowed requests, agreeing well enough
        client.promote("ro-shadow", "stable", shadow, require_shadow_agreement=0.5, min_shadow_jobs=100)
    assert err.value.problem["code"] == "promotion_refused" and "over 4 requests" in err.value.problem["detail"]
    promoted = client.promote("ro-shadow", "stable", shadow, require_shadow_agreement=0.5, min_shadow_jobs=4)
    assert promoted["alias"]["version"] == shadow and promoted["alias"]["shadow"] is None
    trail = audited_trail(
        client, "/v1/models/ro-shadow/aliases/stable/trail", lambda t: t[-1]["event"]["data"]["action"] == "promoted"
    )
    assert "shadow agreement" in trail[-1]["event"]["data"]["rule"]
