"""The embedding cache: made once per tenant, model version and image; bounded; expiring."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from maskline.services.infer.embeddings import Embedding, EmbeddingKey, Embeddings

pytestmark = pytest.mark.unit


def embedding(kib: int) -> Embedding:
    return Embedding(image=np.zeros((1, 1, 3), np.uint8), features=np.zeros(kib * 1024 - 3, np.uint8))


class Encoder:
    def __init__(self, kib: int = 1) -> None:
        self.calls = 0
        self.kib = kib

    async def __call__(self) -> Embedding:
        self.calls += 1
        await asyncio.sleep(0.01)
        return embedding(self.kib)


async def test_the_second_prompt_on_an_image_does_not_run_the_encoder() -> None:
    cache, encoder = Embeddings(1 << 20, 60), Encoder()
    key = EmbeddingKey("tenant-a", "o/m/1/fp32", "ab" * 32)
    _, kept_first = await cache.get(key, encoder)
    _, kept_second = await cache.get(key, encoder)
    assert (kept_first, kept_second, encoder.calls) == (False, True, 1)


async def test_prompts_that_arrive_together_wait_for_one_encoding() -> None:
    cache, encoder = Embeddings(1 << 20, 60), Encoder()
    key = EmbeddingKey("tenant-a", "o/m/1/fp32", "ab" * 32)
    answers = await asyncio.gather(*(cache.get(key, encoder) for _ in range(5)))
    assert encoder.calls == 1
    assert [kept for _, kept in answers].count(False) == 1


async def test_another_tenant_never_gets_an_embedding_made_for_the_first() -> None:
    cache, encoder = Embeddings(1 << 20, 60), Encoder()
    for tenant in ("tenant-a", "tenant-b"):
        _, kept = await cache.get(EmbeddingKey(tenant, "o/m/1/fp32", "ab" * 32), encoder)
        assert not kept
    assert encoder.calls == 2


async def test_the_cache_keeps_within_its_bound_and_forgets_after_its_expiry() -> None:
    cache, encoder = Embeddings(64 * 1024, 0.2), Encoder(kib=20)
    keys = [EmbeddingKey("t", "o/m/1/fp32", f"{i:064x}") for i in range(5)]
    for key in keys:
        await cache.get(key, encoder)
    assert cache._cache.currsize <= 64 * 1024
    _, kept = await cache.get(keys[0], encoder)
    assert not kept  # the oldest was let go to stay within 64 KiB
    await asyncio.sleep(0.3)
    _, kept = await cache.get(keys[-1], encoder)
    assert not kept  # expired


async def test_a_failed_encoding_is_not_kept() -> None:
    cache = Embeddings(1 << 20, 60)
    key = EmbeddingKey("t", "o/m/1/fp32", "ab" * 32)

    async def broken() -> Embedding:
        raise RuntimeError("triton down")

    with pytest.raises(RuntimeError):
        await cache.get(key, broken)
    _, kept = await cache.get(key, Encoder())
    assert not kept


async def test_a_cancelled_encoding_hands_the_work_to_a_prompt_still_waiting() -> None:
    cache, encoder = Embeddings(1 << 20, 60), Encoder()
    key = EmbeddingKey("t", "o/m/1/fp32", "ab" * 32)
    first = asyncio.create_task(cache.get(key, encoder))
    await asyncio.sleep(0)  # the first job starts encoding
    second = asyncio.create_task(cache.get(key, encoder))
    await asyncio.sleep(0)
    first.cancel()  # the first job is cancelled, not the second
    embedded, kept = await second
    assert embedded.nbytes == 1024 and not kept and encoder.calls == 2
    with pytest.raises(asyncio.CancelledError):
        await first
