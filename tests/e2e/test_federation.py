"""Federated rounds over real NATS: two sites, a duplicate and a late update, deadline and quorum."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import torch
from nats.js.api import ConsumerConfig

from maskline.client.site import SiteClient
from maskline.contracts import model_v1
from maskline.contracts.envelope import Envelope, now
from maskline.contracts.subjects import PLATFORM_TENANT
from maskline.infra.embedded.stack import Stack
from maskline.shared.bus import connect
from maskline.shared.models.registry import ModelRegistry
from maskline.shared.storage.filesystem import FilesystemStore

pytestmark = pytest.mark.e2e


TENANT = "tenant-a"


async def site_side(stack: Stack, name: str) -> tuple:  # type: ignore[type-arg]
    """What the sites hold: a bus connection with tenant-a's outside-system credential, and the object
    store; plus, for the test's own inspection only, the registry read as the provisioning identity."""
    bus = await connect(stack.client_settings("partner-a"), name, identity="partner-a")
    inspector = await connect(stack.client_settings("admin"), f"{name}-inspect", identity="admin")
    registry = await ModelRegistry.opened(inspector.js)
    return bus, FilesystemStore(Path(stack.home) / "objects"), registry, f"fed-{uuid.uuid4().hex[:8]}", inspector


def constant_site(value: float, samples: int):  # type: ignore[no-untyped-def]
    """'Training' that sets every parameter to `value`: the merged result is then known exactly."""

    def train(module: torch.jit.ScriptModule, round_: int) -> tuple[torch.jit.ScriptModule, int, dict[str, float]]:
        with torch.no_grad():
            for p in module.parameters():
                p.fill_(value + round_)
        return module, samples, {"accuracy": 0.5 + value / 10}

    return train


async def open_round(bus, registry, federation: str, **fields) -> None:  # type: ignore[no-untyped-def]
    base = await registry.get(PLATFORM_TENANT, "shapes-unet", 1)
    opened = model_v1.RoundOpened(round=1, model=model_v1.VersionRef("shapes-unet", 1), weights=base.weights, **fields)
    await bus.publish(
        Envelope(
            id=f"{federation}:open:1",
            type=model_v1.ROUND_OPENED,
            time=now(),
            source="test",
            tenant=TENANT,
            job_id=federation,
            trace_id="t",
            data=opened,
        )
    )


async def events(bus, federation: str, subject: str, count: int, timeout: float = 60) -> list[dict]:  # type: ignore[no-untyped-def]
    """Replay tenant-a's events of one type (an ordered consumer under a name the site credential owns)."""
    config = ConsumerConfig(name="partner-a-3")
    sub = await bus.js.subscribe(f"{subject}.{TENANT}", stream="MODEL", ordered_consumer=True, config=config)
    found: list[dict] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                msg = await sub.next_msg(timeout=timeout)
                event = json.loads(msg.data)
                if event["job_id"] == federation:
                    found.append(event)
    finally:
        await sub.unsubscribe()
        await bus.js.delete_consumer("MODEL", "partner-a-3")
    return found


async def federation_scenario(stack: Stack) -> dict:
    bus, store, registry, federation, inspector = await site_side(stack, "test-federation")
    a = SiteClient(bus, store, TENANT, federation, "site-a", constant_site(1.0, 100), "partner-a-1")
    b = SiteClient(bus, store, TENANT, federation, "site-b", constant_site(3.0, 300), "partner-a-2")
    await open_round(bus, registry, federation, rounds=2, name="fed-global", sites=("site-a", "site-b"), quorum=2, deadline_s=120)
    await asyncio.gather(a.run(until_round=2, timeout_s=90), b.run(until_round=2, timeout_s=90))
    closed = await events(bus, federation, model_v1.ROUND_CLOSED, 2)
    versions = [await registry.get(TENANT, c["data"]["model"]["name"], c["data"]["model"]["version"]) for c in closed]
    weights = [torch.jit.load(str(Path(stack.home) / "objects" / v.weights.key)) for v in versions]
    await bus.close()
    await inspector.close()
    return {"closed": closed, "versions": versions, "weights": weights, "federation": federation}


def test_two_sites_over_two_rounds_with_a_duplicate_and_a_late_update(stack: Stack) -> None:
    result = asyncio.run(federation_scenario(stack))
    closed = [c["data"] for c in result["closed"]]
    assert [c["round"] for c in closed] == [1, 2]
    assert closed[0]["sites"] == ["site-a", "site-b"] and closed[0]["missing"] == []
    assert closed[1]["final"] is True
    # Round r: site-a trains to 1 + r with 100 samples, site-b to 3 + r with 300: FedAvg = 2.5 + r.
    for round_, module in enumerate(result["weights"], 1):
        values = torch.cat([p.detach().flatten() for p in module.parameters()])
        assert torch.allclose(values, torch.full_like(values, 2.5 + round_))
    # Round 2 started from round 1's merged global model.
    assert result["versions"][1].parent == f"{result['federation']}/2/site-a,{result['federation']}/2/site-b"


async def duplicate_and_late_scenario(stack: Stack) -> dict:
    bus, store, registry, federation, inspector = await site_side(stack, "test-dup")

    async def stray(msg_id: str) -> None:  # site-a again, with other weights and a new message id
        other = await store.put(f"federations/{TENANT}/{federation}/stray.pt", b"not merged", "application/octet-stream")
        update = model_v1.SiteUpdate(round=1, site="site-a", weights=other, samples=5)
        await bus.publish(
            Envelope(
                id=f"{federation}:{msg_id}",
                type=model_v1.UPDATE_SUBMITTED,
                time=now(),
                source="t",
                tenant=TENANT,
                job_id=federation,
                trace_id="t",
                data=update,
            )
        )

    await open_round(bus, registry, federation, rounds=1, name="fed-dup", sites=("site-a", "site-b"), quorum=2, deadline_s=120)
    await SiteClient(bus, store, TENANT, federation, "site-a", constant_site(1.0, 100), "partner-a-1").run(
        until_round=1, timeout_s=30
    )
    await stray("duplicate")
    await asyncio.sleep(0.5)
    await SiteClient(bus, store, TENANT, federation, "site-b", constant_site(3.0, 300), "partner-a-2").run(
        until_round=1, timeout_s=30
    )
    closed = (await events(bus, federation, model_v1.ROUND_CLOSED, 1))[0]["data"]
    await stray("late")
    await asyncio.sleep(1.0)
    state = json.loads((await (await inspector.js.key_value("rounds")).get(f"{TENANT}.{federation}")).value)
    version = await registry.get(TENANT, closed["model"]["name"], closed["model"]["version"])
    module = torch.jit.load(str(Path(stack.home) / "objects" / version.weights.key))
    await bus.close()
    await inspector.close()
    return {"state": state, "module": module}


def test_a_duplicate_and_a_late_update_are_acknowledged_but_never_merged(stack: Stack) -> None:
    result = asyncio.run(duplicate_and_late_scenario(stack))
    assert result["state"]["ignored"] == {"duplicate": 1, "late": 1}
    values = torch.cat([p.detach().flatten() for p in result["module"].parameters()])
    assert torch.allclose(values, torch.full_like(values, 3.5))  # (100 x 2 + 300 x 4) / 400, the duplicate left out


async def deadline_scenario(stack: Stack, quorum: int) -> list[dict]:
    bus, store, registry, federation, inspector = await site_side(stack, "test-deadline")
    fields = {"rounds": 1, "name": "fed-deadline", "sites": ("site-a", "site-b"), "quorum": quorum, "deadline_s": 2.0}
    await open_round(bus, registry, federation, **fields)
    await SiteClient(bus, store, TENANT, federation, "site-a", constant_site(1.0, 10), "partner-a-1").run(
        until_round=1, timeout_s=30
    )
    subject = model_v1.ROUND_CLOSED if quorum == 1 else model_v1.FAILED
    found = await events(bus, federation, subject, 1, timeout=30)
    await bus.close()
    await inspector.close()
    return found


def test_at_the_deadline_a_quorum_merges_and_a_missing_quorum_fails(stack: Stack) -> None:
    closed = asyncio.run(deadline_scenario(stack, quorum=1))[0]["data"]
    assert closed["sites"] == ["site-a"] and closed["missing"] == ["site-b"]
    failed = asyncio.run(deadline_scenario(stack, quorum=2))[0]["data"]
    assert failed["code"] == "quorum_not_reached"
    assert "1 of 2 sites reported" in failed["reason"]


async def crash_scenario(stack: Stack) -> dict:
    bus, store, registry, federation, inspector = await site_side(stack, "test-crash")
    await open_round(bus, registry, federation, rounds=1, name="fed-crash", sites=("site-a", "site-b"), quorum=2, deadline_s=120)
    await SiteClient(bus, store, TENANT, federation, "site-a", constant_site(1.0, 100), "partner-a-1").run(
        until_round=1, timeout_s=30
    )
    await asyncio.sleep(0.5)
    stack.kill_service("weights")  # mid-round: one update recorded, one to come
    await SiteClient(bus, store, TENANT, federation, "site-b", constant_site(3.0, 300), "partner-a-2").run(
        until_round=1, timeout_s=30
    )
    stack.start_service("weights")
    closed = (await events(bus, federation, model_v1.ROUND_CLOSED, 1, timeout=60))[0]["data"]
    await bus.close()
    await inspector.close()
    return closed


def test_a_weights_crash_mid_round_resumes_and_closes_the_round(stack: Stack) -> None:
    closed = asyncio.run(crash_scenario(stack))
    assert closed["sites"] == ["site-a", "site-b"]
