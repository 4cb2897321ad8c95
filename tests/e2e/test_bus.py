"""Other systems publish straight onto NATS with plain nats-py and the published schema."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats
import numpy as np
import pytest
from PIL import Image

from maskline.client import Client
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes

pytestmark = pytest.mark.e2e


def envelope(job_id: str, data: dict, *, version: str = "1.0") -> bytes:
    return json.dumps(
        {
            "id": f"{job_id}:seg.v1.requested",
            "type": "seg.v1.requested",
            "version": version,
            "time": datetime.now(UTC).isoformat(),
            "source": "partner-system",
            "tenant": "tenant-a",
            "job_id": job_id,
            "trace_id": uuid.uuid4().hex,
            "data": data,
        }
    ).encode()


def put_image(stack: Stack, job_id: str) -> dict:
    """An external system writes the image into object storage (here: the embedded disk store)."""
    image, _ = shapes.sample(np.random.default_rng(77), size=160)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    key = f"inputs/tenant-a/{job_id}/upload"
    path = Path(stack.home) / "objects" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return {
        "key": key,
        "size": len(buf.getvalue()),
        "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
        "content_type": "image/png",
    }


async def run_scenario(stack: Stack) -> dict[str, dict]:
    nc = await nats.connect(f"nats://127.0.0.1:{stack.settings.nats_port}")
    js = nc.jetstream()
    outcomes: dict[str, dict] = {}
    done = asyncio.Event()
    wanted = {"wrong-version", "external-good", "bad-data"}

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        event = json.loads(msg.data)
        if event["job_id"] in wanted:
            outcomes[event["job_id"]] = {**event["data"], "on": msg.subject}
            if set(outcomes) == wanted:
                done.set()

    await nc.subscribe("seg.v1.completed", cb=on_event)
    await nc.subscribe("seg.v1.failed", cb=on_event)
    image_ref = put_image(stack, "external-good")
    await js.publish("seg.v1.requested", b"\xde\xad\xbe\xef garbage", headers={"Nats-Msg-Id": uuid.uuid4().hex})
    await js.publish("seg.v1.requested", envelope("wrong-version", {"image": image_ref}, version="2.0"))
    await js.publish("seg.v1.requested", envelope("bad-data", {"image": {"key": 42}}))
    await js.publish("seg.v1.requested", envelope("external-good", {"image": image_ref}))
    await asyncio.wait_for(done.wait(), 60)
    await nc.close()
    return outcomes


def test_poison_on_the_bus_fails_cleanly_and_an_external_job_completes(stack: Stack, client: Client) -> None:
    outcomes = asyncio.run(run_scenario(stack))
    assert outcomes["wrong-version"]["on"] == "seg.v1.failed"
    assert outcomes["wrong-version"]["code"] == "unsupported_version"
    assert outcomes["bad-data"]["on"] == "seg.v1.failed"
    assert outcomes["bad-data"]["code"] == "invalid_message"
    assert "image.key" in outcomes["bad-data"]["reason"]
    assert outcomes["external-good"]["on"] == "seg.v1.completed"
    assert set(outcomes["external-good"]["artifacts"]) == {"mask", "overlay", "regions"}
    # The gateway answers for a job it never saw over HTTP: job state is projected from the bus.
    deadline = time.monotonic() + 10
    while client.status("external-good")["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
