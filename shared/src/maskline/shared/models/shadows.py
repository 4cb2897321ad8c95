"""Shadow traffic: how a shadow version's masks agree with the served ones, per alias.

Infer runs the shadow on a copy of each request that resolves an alias with a shadow, compares
the two masks, publishes the comparison (audited) and adds it to running sums in the `shadows`
bucket, which the gateway shows beside the alias. A redelivered job may be counted twice: these
are monitoring figures, not a ledger.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from numpy.typing import NDArray

from maskline.contracts.model_v1 import ShadowCompared
from maskline.shared.kv import BucketStore, compare_and_set

BUCKET = "shadows"


class ShadowTally(msgspec.Struct, frozen=True, kw_only=True):
    """Running sums of the comparisons of one shadow version under one alias."""

    served: int
    """The alias's version when the last comparison was made."""
    jobs: int = 0
    pixel_agreement_sum: float = 0.0
    miou_sum: float = 0.0
    min_pixel_agreement: float = 1.0
    served_ms_sum: float = 0.0
    shadow_ms_sum: float = 0.0

    def add(self, c: ShadowCompared) -> ShadowTally:
        return ShadowTally(
            served=c.served,
            jobs=self.jobs + 1,
            pixel_agreement_sum=self.pixel_agreement_sum + c.pixel_agreement,
            miou_sum=self.miou_sum + c.miou,
            min_pixel_agreement=min(self.min_pixel_agreement, c.pixel_agreement),
            served_ms_sum=self.served_ms_sum + c.served_ms,
            shadow_ms_sum=self.shadow_ms_sum + c.shadow_ms,
        )


_decoder = msgspec.json.Decoder(ShadowTally)


def tally_key(owner: str, model: str, alias: str, shadow: int) -> str:
    return f"{owner}.{model}.{alias}.{shadow}"


def own_tally_key(owner: str, model: str, alias: str, shadow: int, served: int) -> str:
    """The owner's own requests only, while `served` was the alias's version (an alias guard's evidence)."""
    return f"{owner}.{model}.{alias}.{shadow}.own-{served}"


def agreement(served: NDArray[Any], shadow: NDArray[Any]) -> tuple[float, float]:
    """(pixel agreement, mean IoU over the classes either mask has) of two C x H x W score arrays.
    A shadow at another input size is compared at the served one's size (nearest class)."""
    a = np.asarray(served).argmax(0)
    b = np.asarray(shadow).argmax(0)
    if b.shape != a.shape:
        rows = (np.arange(a.shape[0]) * b.shape[0] // a.shape[0])[:, None]
        cols = (np.arange(a.shape[1]) * b.shape[1] // a.shape[1])[None, :]
        b = b[rows, cols]
    ious = []
    for cls in np.union1d(np.unique(a), np.unique(b)):
        x, y = a == cls, b == cls
        ious.append(float(np.logical_and(x, y).sum()) / float(np.logical_or(x, y).sum()))
    return float((a == b).mean()), float(np.mean(ious))


class ShadowTallies(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)

    async def add(self, c: ShadowCompared, tenant: str) -> None:
        """Every request's comparison (what the owner's promotion rule reads), and the owner's own
        apart (what an alias guard reads: another tenant's requests never roll the owner's alias back)."""
        keys = [tally_key(c.owner, c.model, c.alias, c.shadow)]
        if tenant == c.owner:
            keys.append(own_tally_key(c.owner, c.model, c.alias, c.shadow, c.served))
        for key in keys:
            await compare_and_set(self.kv, key, _decoder, lambda cur: (cur or ShadowTally(served=c.served)).add(c))

    async def get(self, owner: str, model: str, alias: str, shadow: int) -> ShadowTally | None:
        return await self._read(tally_key(owner, model, alias, shadow))

    async def own(self, owner: str, model: str, alias: str, shadow: int, served: int) -> ShadowTally | None:
        return await self._read(own_tally_key(owner, model, alias, shadow, served))

    async def _read(self, key: str) -> ShadowTally | None:
        try:
            entry = await self.kv.get(key)
        except (KeyNotFoundError, NotFoundError):
            return None
        return _decoder.decode(entry.value) if entry.value else None
