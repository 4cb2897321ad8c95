"""Every event of a job lands in the hash-chained audit trail, in order."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from maskline.client import Client
from maskline.contracts.audit_v1 import AuditRecord, chain_hash
from maskline.models.starter import shapes

pytestmark = pytest.mark.e2e


def test_job_trail_is_ordered_and_intact(client: Client) -> None:
    image, _ = shapes.sample(np.random.default_rng(11), size=128)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    job = client.submit(buf.getvalue(), wait=60)
    deadline = time.monotonic() + 20
    while len((trail := client.audit(job["id"]))["records"]) < 4:
        assert time.monotonic() < deadline, trail
        time.sleep(0.2)
    types = [r["type"] for r in trail["records"]]
    assert types == ["seg.v1.requested", "seg.v1.ingested", "seg.v1.inferred", "seg.v1.completed"]
    assert trail["intact"] is True
    seqs = [r["seq"] for r in trail["records"]]
    assert seqs == sorted(seqs)
    inferred = trail["records"][2]["event"]
    assert inferred["data"]["model"] == {"name": "shapes-unet", "version": 1, "precision": "fp32"}
    record = trail["records"][0]
    import msgspec

    parsed = msgspec.json.decode(msgspec.json.encode(record), type=AuditRecord)
    assert chain_hash(parsed) == record["hash"]
    tampered = msgspec.structs.replace(parsed, tenant="someone-else")
    assert chain_hash(tampered) != record["hash"]
