"""Federated rounds are claimed before they are merged: one closer per round, on a real nats-server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from nats.js.api import KeyValueConfig

from maskline.contracts import model_v1
from maskline.services.weights.rounds import CLOSING_RETRY_S, Federation, claim_round
from maskline.shared.bus import Bus
from maskline.shared.kv import compare_and_set

pytestmark = pytest.mark.nats


def federation(round_: int = 1, **changes: object) -> Federation:
    opened = model_v1.RoundOpened(
        name="m",
        model=model_v1.VersionRef("m", 1, "t1"),
        sites=("a", "b"),
        quorum=2,
        deadline_s=60,
        rounds=3,
        round=round_,
        method="avg",
        opened_at=datetime.now(UTC),
    )
    return msgspec.structs.replace(Federation(tenant="t1", trace_id="x", current=opened), **changes)


def test_a_round_is_claimed_once_until_its_claim_goes_stale() -> None:
    claimed = claim_round(federation(), 1, at=100.0)
    assert claimed is not None and claimed.closing_at == 100.0
    assert claim_round(claimed, 1, at=100.0 + CLOSING_RETRY_S - 1) is None  # held by the first closer
    retaken = claim_round(claimed, 1, at=100.0 + CLOSING_RETRY_S + 1)  # its closer died: taken over
    assert retaken is not None and retaken.closing_at == 100.0 + CLOSING_RETRY_S + 1
    assert claim_round(federation(closed=True), 1, at=100.0) is None
    assert claim_round(federation(round_=2), 1, at=100.0) is None
    assert claim_round(None, 1, at=100.0) is None


async def test_of_closers_racing_on_the_bucket_exactly_one_gets_the_round(bus: Bus) -> None:
    bucket = f"rounds-race-{uuid.uuid4().hex[:8]}"
    kv = await bus.js.create_key_value(KeyValueConfig(bucket=bucket, history=1))
    await kv.create("t1.f", msgspec.json.encode(federation()))
    decoder = msgspec.json.Decoder(Federation)

    async def closer(at: float) -> bool:
        result = await compare_and_set(kv, "t1.f", decoder, lambda s: claim_round(s, 1, at))
        return result is not None and result.closing_at == at

    won = await asyncio.gather(*(closer(1000.0 + i / 100) for i in range(8)))
    assert sum(won) == 1
    await bus.js.delete_key_value(bucket)
