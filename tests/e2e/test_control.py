"""Cancel and replay through the running stack: a cancelled job's queued work is skipped by a real
infer process that comes back, no output stands for it and the cancel is audited; a completed job
replayed from its audit record reproduces every output."""

from __future__ import annotations

import time

import numpy as np
import pytest

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.process import wait_until
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from tests.e2e.conftest import AS_ANSWERED, cli
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e


def image(seed: int) -> bytes:
    return png_bytes(shapes.sample(np.random.default_rng(seed), 96)[0])


def test_a_cancelled_job_is_skipped_where_it_waits_and_leaves_no_outputs(stack: Stack, client: JsonClient) -> None:
    stack.stop_service("infer")  # the jobs wait in infer's queue
    try:
        cancelled = client.submit(image(31), wait=0)["id"]
        kept = client.submit(image(32), wait=0)["id"]
        wait_until(lambda: client.status(cancelled)["status"] == "ingested", 30, "ingested, queued for infer")
        view = client.cancel(cancelled)
        assert view["status"] == "cancelled"
    finally:
        stack.start_service("infer")
    wait_until(lambda: client.status(kept)["status"] == "completed", 120, "the other job completed")
    time.sleep(2)
    state = client.status(cancelled)
    assert state["status"] == "cancelled" and state["artifacts"] == {}
    types = [r["type"] for r in client.audit(cancelled)["events"]]
    assert "seg.v1.cancelled" in types
    assert "seg.v1.inferred" not in types and "seg.v1.completed" not in types  # infer skipped it
    assert not [f for f in client.files("outputs")["files"] if f["path"].startswith(f"{cancelled}/")]

    with pytest.raises(ApiError) as err:  # over: it cannot be cancelled again, nor replayed
        client.cancel(cancelled)
    assert (err.value.status, err.value.problem["code"]) == (409, "job_finished")
    with pytest.raises(ApiError) as err:
        client.replay(cancelled)
    assert err.value.problem["code"] == "job_not_completed"
    with pytest.raises(ApiError) as err:  # a completed job is over too
        client.cancel(kept)
    assert err.value.problem["code"] == "job_finished"


def test_a_replay_reruns_the_audited_request_and_every_output_matches(stack: Stack, client: JsonClient) -> None:
    original = client.submit(image(40), wait=60, tta="true")
    assert original["status"] == "completed"
    view = client.replay(original["id"])
    assert view["status"] == "completed" and view["reproduced"], view
    assert set(view["outputs"]) == {"mask", "overlay", "regions"}
    assert view["outputs"]["mask"]["original_sha256"] == view["outputs"]["mask"]["replay_sha256"]
    replay = client.status(view["replay"])
    assert replay["options"]["version"] == original["model"]["version"]  # pinned to what served the original
    assert replay["options"]["tta"] == original["options"]["tta"]
    requested = next(r for r in client.audit(view["replay"])["events"] if r["type"] == "seg.v1.requested")
    assert requested["event"]["data"]["replay_of"] == original["id"]

    out = cli(stack, "replay", original["id"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("match") == 3 and "DIFFERS" not in out.stdout
    with pytest.raises(ApiError) as err:
        JsonClient(stack.gateway_url, api_key="key-b", retry=AS_ANSWERED).replay(
            original["id"]
        )  # another tenant's job: not there
    assert err.value.status == 404
