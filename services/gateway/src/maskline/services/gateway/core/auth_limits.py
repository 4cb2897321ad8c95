"""How many unknown API keys each client address presented lately (auth.py refuses the guessers)."""

from __future__ import annotations

import time
from collections import deque

WINDOW_S = 60.0


class FailedKeys:
    """Unknown keys per client address over the last minute (this replica's view)."""

    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        seen = self._seen.setdefault(client, deque())
        while seen and seen[0] < now - WINDOW_S:
            seen.popleft()
        if not seen:
            del self._seen[client]
            return deque()
        return seen

    def blocked_for(self, client: str, limit: int) -> float:
        """Seconds until `client` may try again (0: it may now)."""
        now = time.monotonic()
        seen = self._recent(client, now)
        return seen[0] + WINDOW_S - now if len(seen) >= limit else 0.0

    def failed(self, client: str) -> None:
        now = time.monotonic()
        if len(self._seen) > 100_000:  # a flood from many addresses: forget the quiet ones first
            for quiet in [c for c, s in self._seen.items() if s[-1] < now - WINDOW_S]:
                del self._seen[quiet]
        self._seen.setdefault(client, deque()).append(now)

    def forgive(self, client: str) -> None:
        """Take back the newest failure of `client` (a sign-in counts as failed before it is checked)."""
        seen = self._seen.get(client)
        if seen:
            seen.pop()
