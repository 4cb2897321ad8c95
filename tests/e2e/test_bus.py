"""Other systems publish straight onto NATS with their own credential, the published schema and a
plain nats-py client; poison from them fails cleanly with a reason and blocks nothing."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "publish_job.py"


def png(seed: int) -> bytes:
    image, _ = shapes.sample(np.random.default_rng(seed), size=160)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_the_published_example_runs_from_outside_the_package(stack: Stack, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(png(77))
    argv = [
        sys.executable,
        "-I",  # isolated: not even the current folder on sys.path
        str(EXAMPLE),
        str(image),
        "--nats",
        f"nats://127.0.0.1:{stack.settings.nats_port}",
        "--name",
        "partner-a",
        "--seed",
        str(stack.credentials_dir / "partner-a.nk"),
        "--tenant",
        "tenant-a",
        "--gateway",
        stack.gateway_url,
        "--api-key",
        "key-a",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["subject"] == "seg.v1.completed.tenant-a", result
    assert set(result["data"]["artifacts"]) == {"mask", "overlay", "regions"}
    assert result["mask_bytes"] > 0 and result["imported_maskline"] is False


def envelope(job_id: str, data: dict, *, version: str = "1.3", tenant: str = "tenant-a") -> bytes:
    return json.dumps(
        {
            "id": f"{job_id}:seg.v1.requested",
            "type": "seg.v1.requested",
            "version": version,
            "time": datetime.now(UTC).isoformat(),
            "source": "partner-system",
            "tenant": tenant,
            "job_id": job_id,
            "trace_id": uuid.uuid4().hex,
            "data": data,
        }
    ).encode()


async def outcomes_of(stack: Stack, sends: dict[str, bytes], raw: list[bytes]) -> dict[str, dict]:
    """Publish as partner-a (tenant-a) and collect the completed/failed event of each job."""
    import nats

    nc = await nats.connect(
        f"nats://127.0.0.1:{stack.settings.nats_port}",
        nkeys_seed=str(stack.credentials_dir / "partner-a.nk"),
        inbox_prefix="_INBOX.partner-a",
    )
    js = nc.jetstream()
    outcomes: dict[str, dict] = {}
    done = asyncio.Event()

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        event = json.loads(msg.data)
        if event["job_id"] in sends:
            outcomes[event["job_id"]] = {**event["data"], "on": msg.subject, "tenant": event["tenant"]}
            if set(outcomes) == set(sends):
                done.set()

    await nc.subscribe("seg.v1.completed.tenant-a", cb=on_event)
    await nc.subscribe("seg.v1.failed.tenant-a", cb=on_event)
    for body in raw:
        await js.publish("seg.v1.requested.tenant-a", body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
    for job_id, body in sends.items():
        await js.publish("seg.v1.requested.tenant-a", body, headers={"Nats-Msg-Id": f"tenant-a:{job_id}"})
    await asyncio.wait_for(done.wait(), 60)
    await nc.close()
    return outcomes


def test_poison_from_an_outside_system_fails_cleanly_and_its_good_job_completes(stack: Stack, client: JsonClient) -> None:
    good = client.upload(png(78))
    ref = {k: good[k] for k in ("key", "size", "sha256", "content_type")}
    sends = {
        "wrong-version": envelope("wrong-version", {"image": ref}, version="2.0"),
        "bad-data": envelope("bad-data", {"image": {"key": 42}}),
        "external-good": envelope("external-good", {"image": ref}),
    }
    outcomes = asyncio.run(outcomes_of(stack, sends, [b"\xde\xad\xbe\xef garbage"]))
    assert outcomes["wrong-version"]["on"] == "seg.v1.failed.tenant-a"
    assert outcomes["wrong-version"]["code"] == "unsupported_version"
    assert outcomes["bad-data"]["code"] == "invalid_message" and "image.key" in outcomes["bad-data"]["reason"]
    assert outcomes["external-good"]["on"] == "seg.v1.completed.tenant-a"
    assert set(outcomes["external-good"]["artifacts"]) == {"mask", "overlay", "regions"}
    # The gateway answers for a job it never saw over HTTP: job state is projected from the bus.
    deadline = time.monotonic() + 10
    while client.status("external-good")["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
