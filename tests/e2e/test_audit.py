"""Every event of a job lands in the hash-chained audit trail, in order."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np
import pytest
from PIL import Image

from maskline.client import JsonClient
from maskline.contracts.audit_v1 import HOLD_S, AuditRecord, chain_hash, record_subject
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from maskline.shared.bus import connect
from maskline.shared.tenants.trails import job_trail

pytestmark = pytest.mark.e2e


def test_job_trail_is_ordered_and_intact(client: JsonClient) -> None:
    image, _ = shapes.sample(np.random.default_rng(11), size=128)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    job = client.submit(buf.getvalue(), wait=60)
    deadline = time.monotonic() + 20
    while len((trail := client.audit(job["id"]))["events"]) < 4:
        assert time.monotonic() < deadline, trail
        time.sleep(0.2)
    types = [e["type"] for e in trail["events"]]
    assert types == ["seg.v1.requested", "seg.v1.ingested", "seg.v1.inferred", "seg.v1.completed"]
    assert trail["intact"] is True
    # The job's events before its last are held (up to HOLD_S) and recorded with it: a job that
    # finished well within that is one signed record, not four.
    took = datetime.fromisoformat(trail["events"][3]["event_time"]) - datetime.fromisoformat(trail["events"][0]["event_time"])
    if took.total_seconds() < HOLD_S / 2:
        assert len(trail["records"]) == 1, [len(r.get("more", [])) for r in trail["records"]]
    seqs = [r["seq"] for r in trail["records"]]
    assert seqs == sorted(seqs)
    inferred = trail["events"][2]["event"]
    assert inferred["data"]["model"] == {
        "name": "shapes-unet",
        "version": 1,
        "precision": "fp32",
        "owner": "maskline",
        "alias": "stable",
        "canary": False,
    }
    record = trail["records"][0]

    parsed = msgspec.json.decode(msgspec.json.encode(record), type=AuditRecord)
    assert parsed.signature and parsed.key_id
    assert chain_hash(parsed) == record["hash"]
    tampered = msgspec.structs.replace(parsed, tenant="someone-else")
    assert chain_hash(tampered) != record["hash"]
    assert isinstance(parsed.more, list)
    dropped = msgspec.structs.replace(parsed, more=parsed.more[:-1])  # an event cut out of a record of several
    assert chain_hash(dropped) != record["hash"]


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MASKLINE_HOME": str(stack.home), "MASKLINE_NATS_PORT": str(stack.settings.nats_port)}
    return subprocess.run(
        [sys.executable, "-m", "maskline.cli", "--json", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_audit_verify_names_a_forged_record(stack: Stack, client: JsonClient, tmp_path: Path) -> None:
    image, _ = shapes.sample(np.random.default_rng(12), size=96)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    job = client.submit(buf.getvalue(), wait=60)
    time.sleep(6)  # a signed checkpoint after the job's records
    kept = tmp_path / "checkpoint.json"
    verified = run_cli(stack, "audit", "verify", "--save-checkpoint", str(kept))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    summary = json.loads(verified.stdout)
    assert (
        summary["intact"] is True
        and summary["events"] >= 4
        and summary["records"] >= 1
        and summary["checkpoints"] >= 1
        and kept.exists()
    )

    async def forge() -> int:
        """An insider with the provisioning identity appends a record that links and hashes correctly."""
        bus = await connect(stack.client_settings("admin"), "forger", identity="admin")
        trail = await job_trail(bus.js, "tenant-a", job["id"])
        last = trail[-1]
        info = await bus.js.stream_info("AUDIT")
        head = msgspec.json.decode((await bus.js.get_msg("AUDIT", info.state.last_seq)).data or b"{}")
        fake = msgspec.structs.replace(last, seq=int(head.get("seq", last.seq)) + 1, prev_hash=str(head.get("hash", last.hash)))
        fake = msgspec.structs.replace(fake, hash=chain_hash(fake), signature="00" * 64)
        ack = await bus.js.publish(record_subject("tenant-a", job["id"]), msgspec.json.encode(fake))
        await bus.close()
        return int(ack.seq)

    forged_at = asyncio.run(forge())
    broken = run_cli(stack, "audit", "verify", "--checkpoint", str(kept))
    assert broken.returncode == 1
    verdict = json.loads(broken.stdout)
    assert (
        verdict["intact"] is False and f"stream seq {forged_at}" in verdict["first_break"] and "forged" in verdict["first_break"]
    )
    # The job's own trail (over HTTP) shows the forged record as not intact.
    assert client.audit(job["id"])["intact"] is False
