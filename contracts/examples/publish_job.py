"""Publish a segmentation job straight onto NATS, as another system would: nats-py, httpx and the
published JSON Schema only — nothing from maskline is imported.

    python contracts/examples/publish_job.py --nats nats://127.0.0.1:4222 --name partner \
        --seed ~/.maskline/credentials/partner.nk --tenant acme --gateway http://127.0.0.1:8080 \
        --api-key acme-key image.png

Prints one JSON line: the job id, the event that ended it and, when it completed, the mask size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jsonschema
import nats
from nats.aio.msg import Msg

# In a source checkout; an installed maskline-contracts holds the same files (its package's `published/`).
SCHEMAS = Path(__file__).resolve().parents[1] / "src" / "maskline" / "contracts" / "published" / "schemas"


def envelope(tenant: str, job_id: str, image_ref: dict[str, object]) -> dict[str, object]:
    return {
        "id": f"{job_id}:seg.v1.requested",
        "type": "seg.v1.requested",
        "version": "1.3",
        "time": datetime.now(UTC).isoformat(),
        "source": "partner-system",
        "tenant": tenant,
        "job_id": job_id,
        "trace_id": uuid.uuid4().hex,
        "data": {"image": image_ref, "options": {"model": "shapes-unet", "outputs": ["mask", "overlay", "regions"]}},
    }


async def publish_and_wait(args: argparse.Namespace, event: dict[str, object]) -> tuple[str, dict[str, object]]:
    """Publish on the tenant's subject with this system's own credential; wait for the outcome."""
    nc = await nats.connect(args.nats, nkeys_seed=args.seed, inbox_prefix=f"_INBOX.{args.name}")
    outcome: asyncio.Future[tuple[str, dict[str, object]]] = asyncio.get_running_loop().create_future()

    async def on_result(msg: Msg) -> None:
        result = json.loads(msg.data)
        if result["job_id"] == event["job_id"] and not outcome.done():
            outcome.set_result((msg.subject, result["data"]))

    for kind in ("completed", "failed"):
        await nc.subscribe(f"seg.v1.{kind}.{args.tenant}", cb=on_result)
    subject, msg_id = f"seg.v1.requested.{args.tenant}", f"{args.tenant}:{event['id']}"
    await nc.jetstream().publish(subject, json.dumps(event).encode(), headers={"Nats-Msg-Id": msg_id})
    try:
        return await asyncio.wait_for(outcome, args.timeout)
    finally:
        await nc.close()


def main(args: argparse.Namespace) -> dict[str, object]:
    http = httpx.Client(base_url=args.gateway, headers={"Authorization": f"Bearer {args.api_key}"}, timeout=60)
    # 1. Hand the image over: the answer is the reference to put in the request.
    uploaded = http.post("/v1/uploads", content=Path(args.image).read_bytes(), headers={"Content-Type": "image/png"})
    uploaded.raise_for_status()
    ref = {k: uploaded.json()[k] for k in ("key", "size", "sha256", "content_type")}
    job_id = args.job_id or uuid.uuid4().hex
    event = envelope(args.tenant, job_id, ref)
    jsonschema.validate(event, json.loads((SCHEMAS / "seg.v1.requested.json").read_text()))
    # 2. Publish it onto NATS, wait for the completed or failed event.
    subject, data = asyncio.run(publish_and_wait(args, event))
    result: dict[str, object] = {"job_id": job_id, "subject": subject, "data": data}
    # 3. Fetch the mask over HTTP (the gateway's job view follows the bus within moments).
    if subject.startswith("seg.v1.completed"):
        mask = http.get(f"/v1/segmentations/{job_id}/mask")
        for _ in range(100):
            if mask.status_code != 404:
                break
            time.sleep(0.1)
            mask = http.get(f"/v1/segmentations/{job_id}/mask")
        mask.raise_for_status()
        result["mask_bytes"] = len(mask.content)
    result["imported_maskline"] = any(name.startswith("maskline") for name in sys.modules)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image")
    for flag in ("--nats", "--name", "--seed", "--tenant", "--gateway", "--api-key"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--job-id")
    parser.add_argument("--timeout", type=float, default=60.0)
    print(json.dumps(main(parser.parse_args()), default=str))
