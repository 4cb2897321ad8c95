"""Image embeddings kept per tenant, model version and image content: further prompts on one image
run only the prompt's decoder.

A bound in bytes and an expiry (cachetools' TTLCache, sized by each entry's arrays), per infer
instance. The key starts with the tenant, so one tenant's entry never answers another's request
even for the same image and model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import TTLCache
from numpy.typing import NDArray


@dataclass(frozen=True)
class Embedding:
    """What an image costs once: its pixels at the size prompts are answered in, and the encoder's output."""

    image: NDArray[np.uint8]
    """Bundled path: (h, w, 3) RGB, the working copy GrabCut reads. SAM format: empty (the decoder
    needs only the embedding)."""
    features: NDArray[Any]
    """Bundled path: the named model's class probabilities (classes, h, w), float16. SAM format:
    the image encoder's `image_embeddings`."""

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes + self.features.nbytes)


@dataclass(frozen=True)
class EmbeddingKey:
    tenant: str
    model: str
    """owner/name/version/precision of the version that made it."""
    image_sha256: str


class Embeddings:
    def __init__(self, max_bytes: int, ttl_s: float) -> None:
        self._cache: TTLCache[EmbeddingKey, Embedding] = TTLCache(
            maxsize=max_bytes, ttl=ttl_s, getsizeof=lambda e: max(1, e.nbytes)
        )
        self._making: dict[EmbeddingKey, asyncio.Future[Embedding]] = {}

    async def get(self, key: EmbeddingKey, make: Callable[[], Awaitable[Embedding]]) -> tuple[Embedding, bool]:
        """The embedding, and whether it was kept. Prompts that arrive together for one image wait
        for one computation; if that one is cancelled (its job's, not theirs), one of them makes it."""
        while True:
            found = self._cache.get(key)
            if found is not None:
                return found, True
            pending = self._making.get(key)
            if pending is None:
                return await self._make(key, make), False
            try:
                return await asyncio.shield(pending), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this job was cancelled
                # the maker's job was cancelled: try again (make it here, or wait for another)

    async def _make(self, key: EmbeddingKey, make: Callable[[], Awaitable[Embedding]]) -> Embedding:
        future: asyncio.Future[Embedding] = asyncio.get_running_loop().create_future()
        self._making[key] = future
        try:
            made = await make()
        except asyncio.CancelledError:
            future.cancel()  # waiters try again
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            self._making.pop(key, None)
        future.set_result(made)
        if made.nbytes <= self._cache.maxsize:  # larger than the whole bound: used once, not kept
            self._cache[key] = made
        return made
