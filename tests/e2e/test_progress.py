"""A job's progress pushed as server-sent events: every state the projection writes, in order,
ending with the final one; the CLI's progress bars read it (JsonClient.wait_job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskline.client import JsonClient

pytestmark = pytest.mark.e2e

FINAL = ("completed", "failed", "cancelled")


def test_a_jobs_states_arrive_as_events_until_it_is_final(client: JsonClient, other_tenant: JsonClient, samples: Path) -> None:
    job = client.submit(samples / "shapes-2.png", tta="true")["id"]
    events = list(client.follow(job, timeout=120))
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "completed" and not [s for s in statuses[:-1] if s in FINAL]
    assert len(events) >= 2  # at least where it stood when we asked, and its end
    assert events[-1] == client.job(job)  # the last event is what a GET answers now
    order = ["requested", "ingested", "augmented", "inferred", "completed"]
    ranks = [order.index(s) for s in statuses]
    assert ranks == sorted(ranks) and {"augmented", "inferred"} <= set(statuses)  # each stage of a TTA job, in order

    seen: list[str] = []
    assert client.wait_job(job, on_progress=lambda view: seen.append(view["status"]))["status"] == "completed"
    assert seen == ["completed"]  # a finished job: one event, then the stream ends

    response = other_tenant.http.get(f"/v1/jobs/{job}/events")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
