"""Which model versions Triton keeps loaded within a memory budget: before a version is loaded,
the versions unused the longest are unloaded until the new one fits. A version an alias of
`pinned_aliases` serves is never unloaded, nor one a request of this instance is using.

What counts against the budget is each loaded version's files in the model repository (weights and
the backend's few kilobytes): Triton reports no memory per model version, and a version's weights
are what it holds in memory, give or take the runtime's own buffers. Loaded versions are read from
Triton itself (its repository index), so versions loaded by another infer instance sharing the
Triton, or before a restart, count too; when each was last used is what this instance saw (Triton's
own `last_inference` starts again at every reload of a model, which loading any version of it is).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resident:
    """A version loaded in Triton (a SAM-format version's decoder goes with its encoder)."""

    name: str
    """Its Triton model name (`owner.model`)."""
    version: int
    size: int
    """Bytes of its files in the repository."""
    last_used: float
    pinned: bool
    in_use: bool


def evictions(resident: list[Resident], needed: int, budget: int) -> list[Resident]:
    """The versions to unload, least recently used first, so that `needed` more bytes fit in
    `budget`. Pinned and in-use versions stay; when they alone exceed it, the load goes ahead over
    budget (a request is served rather than refused) and the status says so."""
    used = sum(r.size for r in resident)
    chosen: list[Resident] = []
    for r in sorted((r for r in resident if not r.pinned and not r.in_use), key=lambda r: r.last_used):
        if used + needed <= budget:
            break
        chosen.append(r)
        used -= r.size
    return chosen


@dataclass
class Usage:
    """What this instance knows of the versions it serves: last use, requests in flight, pins."""

    last_used: dict[tuple[str, int], float] = field(default_factory=dict)
    in_use: Counter[tuple[str, int]] = field(default_factory=Counter)
    loads: int = 0
    unloads: int = 0
    load_seconds: float = 0.0
    over_budget_loads: int = 0

    def touch(self, key: tuple[str, int]) -> None:
        self.last_used[key] = time.time()


#: Whether a version (`owner.model`, version) is served by a pinned alias (asked of the registry).
PinCheck = Callable[[str, int], Awaitable[bool]]
