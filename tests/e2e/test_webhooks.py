"""Webhooks, delivered by the notify service to a real HTTP receiver: signed (checked the way a
receiver would), per tenant and per request, retried with back-off while the receiver fails, and
dead-lettered — the job untouched — when it never answers."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
import torch

from maskline.client import JsonClient
from maskline.infra.embedded.process import free_port, wait_until
from maskline.infra.receiver import Receiver
from maskline.models.starter import WEIGHTS, shapes
from maskline.shared.tenants import webhooks

pytestmark = pytest.mark.e2e


class Hook:
    """A webhook receiver: answers `fail_first` deliveries with 500, then 200; keeps what it was sent."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict[str, object]] = []
        self.fail_first = fail_first
        self.receiver = Receiver(self._on_post)
        self.url = self.receiver.url("/hook")

    def _on_post(self, headers: dict[str, str], body: bytes) -> int:
        failing = len(self.received) < self.fail_first
        self.received.append({"body": body, "headers": headers, "at": time.monotonic(), "failed": failing})
        return 500 if failing else 200

    def delivered(self) -> list[dict[str, object]]:
        return [r for r in self.received if not r["failed"]]


@pytest.fixture
def receiver() -> Iterator[Hook]:
    hook = Hook(fail_first=2)
    yield hook
    hook.receiver.close()


def test_a_tenants_webhook_is_signed_retried_and_delivered_once(client: JsonClient, receiver: Hook, samples: Path) -> None:
    made = client.http.put("/v1/webhooks", json={"url": receiver.url}).json()
    secret = made["secret"]
    assert made["url"] == receiver.url and len(secret) >= 32
    assert client.http.get("/v1/webhooks").json()["secret"] is None  # shown once, when made
    try:
        job = client.submit(samples / "shapes-2.png", wait=120)
        wait_until(lambda: receiver.delivered(), 60, "the webhook delivered")
        delivered = receiver.delivered()[0]
        body, headers = delivered["body"], delivered["headers"]
        assert isinstance(body, bytes) and isinstance(headers, dict)
        assert webhooks.verify(secret, body, headers[webhooks.SIGNATURE])  # what a receiver checks
        assert not webhooks.verify(secret, body + b" ", headers[webhooks.SIGNATURE])
        # ... or with the Standard Webhooks library, the secret as it was handed out (whsec_...)
        assert secret.startswith("whsec_") and standardwebhooks.Webhook(secret).verify(body, headers)["job_id"] == job["id"]
        assert headers["webhook-id"] == headers["Maskline-Delivery"]  # the delivery id is inside the signature
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(secret).verify(body, {**headers, "webhook-id": "another-delivery"})
        payload = json.loads(body)
        assert (payload["job_id"], payload["status"], payload["type"]) == (job["id"], "completed", "seg.v1.completed")
        assert headers["Maskline-Event"] == "seg.v1.completed"
        # two 500s first: tried again with growing waits, the same delivery id each time
        attempts = [r for r in receiver.received if json.loads(r["body"])["job_id"] == job["id"]]  # type: ignore[arg-type]
        assert [a["failed"] for a in attempts] == [True, True, False]
        assert len({a["headers"]["Maskline-Delivery"] for a in attempts}) == 1  # type: ignore[index]
        gaps = [float(b["at"]) - float(a["at"]) for a, b in itertools.pairwise(attempts)]  # type: ignore[arg-type]
        assert gaps[1] > gaps[0] >= 0.4
        time.sleep(6)  # longer than the next back-off step: an answered delivery is never sent again
        assert len([r for r in receiver.received if json.loads(r["body"])["job_id"] == job["id"]]) == 3  # type: ignore[arg-type]
        assert client.status(job["id"])["status"] == "completed"
    finally:
        client.http.delete("/v1/webhooks")


def test_a_requests_own_webhook_needs_the_secret_and_an_unreachable_one_is_dead_lettered(
    client: JsonClient, other_tenant: JsonClient, samples: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    form = {"webhook_url": dead}
    files = {"image": ("a.png", (samples / "shapes-1.png").read_bytes(), "image/png")}
    refused = other_tenant.http.post("/v1/segmentations", files=files, data=form)
    assert refused.status_code == 422 and refused.json()["code"] == "no_webhook_secret"
    assert client.http.put("/v1/webhooks", json={"url": "ftp://example.com/x"}).json()["code"] == "webhook_refused"

    client.http.put("/v1/webhooks", json={"url": None})  # a secret only, for per-request URLs
    try:
        job = client.http.post("/v1/segmentations?wait=120", files=files, data=form).json()
        assert job["status"] == "completed"

        def dead_lettered() -> list[dict[str, object]]:
            return [d for d in client.dead_letters() if d.get("consumer") == "notify-completed" and job["id"] in json.dumps(d)]

        wait_until(dead_lettered, 90, "the undeliverable webhook in the dead letters")
        letter = dead_lettered()[0]
        assert letter["code"] == "webhook_failed" and "unreachable" in str(letter["reason"])
        assert client.status(job["id"])["status"] == "completed"  # the job is not touched
    finally:
        client.http.delete("/v1/webhooks")


def test_every_kind_of_job_reports_its_end_once(client: JsonClient, tmp_path: Path) -> None:
    """Registrations, merges (which register their result on the way: one delivery, not two) and a
    failed job, reported at the tenant's URL or at a request's own `webhook_url`."""
    tenants, own = Hook(), Hook()
    client.http.put("/v1/webhooks", json={"url": tenants.url})
    try:
        version = client.register_model(WEIGHTS, name="wh-model", labels=list(shapes.LABELS), input_size=(128, 128))["version"]
        merge = client.merge_models([("wh-model", version), ("wh-model", version)], name="wh-merged", webhook_url=own.url)
        assert client.wait_job(merge["id"], timeout=120)["status"] == "completed"
        torch.jit.script(torch.nn.Conv2d(3, 4, 1)).save(str(tmp_path / "tiny.pt"))
        tiny = client.register_model(tmp_path / "tiny.pt", name="wh-tiny", labels=list(shapes.LABELS), input_size=(128, 128))
        refused = client.merge_models([("wh-model", version), ("wh-tiny", tiny["version"])], name="wh-nope")
        assert client.wait_job(refused["id"], timeout=60)["status"] == "failed"

        def bodies(hook: Hook) -> list[dict[str, Any]]:
            return [json.loads(r["body"]) for r in hook.delivered()]  # type: ignore[arg-type]

        wait_until(lambda: len(bodies(tenants)) >= 3 and bodies(own), 60, "every job's end delivered")
        time.sleep(6)  # a second delivery for a job (its registration event, a retry) would come within this
        assert [(b["type"], b["kind"], b["status"], b["links"]["self"]) for b in bodies(own)] == [
            ("model.v1.merged", "model-merge", "completed", f"/v1/jobs/{merge['id']}")
        ]
        at_tenant = sorted((b["kind"], b["type"], b["status"]) for b in bodies(tenants))
        assert at_tenant == [
            ("model-merge", "model.v1.failed", "failed"),
            ("registration", "model.v1.registered", "completed"),
            ("registration", "model.v1.registered", "completed"),
        ]
        failed = next(b for b in bodies(tenants) if b["status"] == "failed")
        assert failed["job_id"] == refused["id"] and failed["error"]["code"] == "incompatible_models"
    finally:
        client.http.delete("/v1/webhooks")
        tenants.receiver.close()
        own.receiver.close()


def test_private_addresses_are_refused_unless_the_operator_allows_them() -> None:
    with pytest.raises(webhooks.WebhookRefused, match="private address"):
        webhooks.check_url("http://127.0.0.1:9/x", allow_private=False)
    with pytest.raises(webhooks.WebhookRefused, match="not http"):
        webhooks.check_url("file:///etc/passwd", allow_private=True)
    assert webhooks.check_url("http://127.0.0.1:9/x", allow_private=True)
