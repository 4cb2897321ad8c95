"""The bus as a hostile insider or partner finds it (docs/security.md): no anonymous access, each
identity limited to its own subjects, tenants bound to credentials, references checked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.shared.bus import Bus, connect, read_stream
from tests.e2e.test_bus import png

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def as_identity(stack: Stack, identity: str) -> AsyncIterator[tuple[Bus, list[str]]]:
    """A connection as `identity` and the permission errors the server sends it."""
    errors: list[str] = []
    bus = await connect(stack.client_settings(identity), f"attacker-{identity}", identity=identity, reconnect=False)

    async def collect(exc: Exception) -> None:
        errors.append(str(exc).lower())

    bus.nc._error_cb = collect
    try:
        yield bus, errors
    finally:
        await bus.nc.close()


async def refused(bus: Bus, errors: list[str], subject: str, data: bytes = b"{}") -> bool:
    """Publish through JetStream; True when the server refused it (no ack, a permissions violation)."""
    try:
        await bus.js.publish(subject, data, timeout=1.5)
    except (NatsTimeoutError, TimeoutError):
        await asyncio.sleep(0.1)
        return any("permissions violation" in e and subject.lower() in e for e in errors)
    return False


def test_anonymous_clients_are_refused(stack: Stack) -> None:
    async def scenario() -> str:
        try:
            await nats.connect(f"nats://127.0.0.1:{stack.settings.nats_port}", allow_reconnect=False, connect_timeout=2)
        except Exception as exc:
            return str(exc)
        return "connected"

    assert "authorization violation" in asyncio.run(scenario()).lower()


def test_a_partner_publishes_only_its_tenant_commands_and_reads_only_its_results(stack: Stack) -> None:
    async def scenario() -> dict[str, bool]:
        async with as_identity(stack, "partner-a") as (bus, errors):
            results = {
                "other tenant's request": await refused(bus, errors, "seg.v1.requested.tenant-b"),
                "forged completion": await refused(bus, errors, "seg.v1.completed.tenant-a"),
                "pipeline event": await refused(bus, errors, "seg.v1.inferred.tenant-a"),
                "audit record": await refused(bus, errors, "audit.v1.job.tenant-a.x"),
                "job state": await refused(bus, errors, "$KV.jobs.tenant-b.x"),
                "model registry": await refused(bus, errors, "$KV.models.tenant-a.evil.1"),
            }
            try:
                await bus.js.purge_stream("AUDIT")
                results["purge the audit trail"] = False
            except Exception:
                results["purge the audit trail"] = True
            await bus.nc.subscribe("seg.v1.completed.tenant-b")
            await bus.nc.flush()
            await asyncio.sleep(0.3)
            results["read another tenant's results"] = any("subscription" in e and "tenant-b" in e for e in errors)
            return results

    results = asyncio.run(scenario())
    assert all(results.values()), results


def test_a_service_may_only_publish_what_it_produces(stack: Stack) -> None:
    async def scenario() -> dict[str, bool]:
        async with as_identity(stack, "ingest") as (bus, errors):
            return {
                "ingest forges a completion": await refused(bus, errors, "seg.v1.completed.tenant-a"),
                "ingest writes the audit trail": await refused(bus, errors, "audit.v1.job.tenant-a.x"),
                "ingest registers a model": await refused(bus, errors, "model.v1.registered.tenant-a"),
                "ingest edits job state": await refused(bus, errors, "$KV.jobs.tenant-a.x"),
                "ingest fakes a heartbeat of infer": await refused(bus, errors, "$KV.fleet.infer.fake"),
            }

    results = asyncio.run(scenario())
    assert all(results.values()), results


def request(job_id: str, image: dict[str, object], tenant: str = "tenant-a") -> bytes:
    return json.dumps(
        {
            "id": f"{job_id}:seg.v1.requested",
            "type": "seg.v1.requested",
            "version": "1.3",
            "time": datetime.now(UTC).isoformat(),
            "source": "partner",
            "tenant": tenant,
            "job_id": job_id,
            "trace_id": "t",
            "data": {"image": image},
        }
    ).encode()


def test_claims_in_events_are_checked_permanently_and_with_a_reason(
    stack: Stack, client: JsonClient, other_tenant: JsonClient
) -> None:
    theirs = other_tenant.upload(png(90))  # tenant-b's image: its reference is no secret to an attacker
    mine = client.upload(png(91))
    mine_ref = {k: mine[k] for k in ("key", "size", "sha256", "content_type")}
    jobs = {
        "claims-tenant-b": (request("claims-tenant-b", mine_ref, tenant="tenant-b"), "tenant_mismatch"),
        "foreign-image": (request("foreign-image", {k: theirs[k] for k in mine_ref}), "foreign_reference"),
        "wrong-hash": (request("wrong-hash", {**mine_ref, "sha256": hashlib.sha256(b"x").hexdigest()}), "reference_mismatch"),
        "wrong-size": (request("wrong-size", {**mine_ref, "size": mine["size"] + 1}), "reference_mismatch"),
        "escape": (request("escape", {**mine_ref, "key": "../../../../etc/passwd"}), "invalid_reference"),
        "directory": (request("directory", {**mine_ref, "key": "inputs/tenant-a/uploads"}), "input_missing"),
    }

    async def scenario() -> tuple[dict[str, dict], list[str]]:
        async with as_identity(stack, "partner-a") as (bus, _):
            seen: dict[str, dict] = {}
            done = asyncio.Event()

            async def on_failed(msg: nats.aio.msg.Msg) -> None:
                event = json.loads(msg.data)
                if event["job_id"] in jobs:
                    seen[event["job_id"]] = event
                    if len(seen) == len(jobs):
                        done.set()

            await bus.nc.subscribe("seg.v1.failed.tenant-a", cb=on_failed)
            for _job_id, (body, _) in jobs.items():
                await bus.js.publish("seg.v1.requested.tenant-a", body, headers={"Nats-Msg-Id": f"tenant-a:{uuid.uuid4().hex}"})
            await asyncio.wait_for(done.wait(), 60)
        async with as_identity(stack, "admin") as (inspector, _):
            every = await read_stream(inspector.js, "SEG", "seg.v1.>")
            leaked = [json.loads(m.data).get("job_id") for m in every if m.subject.endswith(".tenant-b")]
        return seen, [j for j in leaked if j in jobs]

    seen, leaked = asyncio.run(scenario())
    for job_id, (_, code) in jobs.items():
        failed = seen[job_id]
        assert failed["tenant"] == "tenant-a" and failed["data"]["code"] == code, (job_id, failed["data"])
    assert "claims tenant 'tenant-b'" in seen["claims-tenant-b"]["data"]["reason"]
    assert "after" not in seen["escape"]["data"]["reason"]  # refused at once, not retried as transient
    assert leaked == []
    # Nothing of tenant-b's was touched, and its job ids are not tenant-a's.
    assert other_tenant.http.get("/v1/segmentations/claims-tenant-b").status_code == 404
