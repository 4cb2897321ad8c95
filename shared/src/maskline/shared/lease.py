"""A lease: at most one holder at a time among the replicas that want it, handed on when the holder
stops renewing it (stopped, crashed, cut off from the bus).

The lease is one key of a key-value bucket whose entries expire (`leases`, TTL in the system
table). Taking it is `create` (refused while the key exists); keeping it is `update` against the
revision written last, every third of the TTL. A holder that misses its renewals loses the key
to expiry and its next `update` is refused, so two replicas never both believe they hold it for
longer than one renewal period. A holder that stops cleanly deletes the key: the next replica takes
over at its next attempt instead of after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from maskline.contracts import subjects as table
from maskline.shared.bus import BUS_UNAVAILABLE
from maskline.shared.kv import BucketStore

BUCKET = "leases"
log = structlog.get_logger("lease")


class Lease(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext, name: str, holder: str) -> None:
        super().__init__(js)
        self.js, self.name, self.holder = js, name, holder
        self.ttl_s = table.bucket(BUCKET).ttl_s
        self.held = False
        self._revision: int | None = None

    async def renew(self) -> bool:
        """One attempt to take or keep the lease; whether this replica holds it now."""
        was = self.held
        try:
            if self._revision is None:
                self._revision = await self.kv.create(self.name, self.holder.encode())
            else:
                self._revision = await self.kv.update(self.name, self.holder.encode(), last=self._revision)
            self.held = True
        except KeyWrongLastSequenceError:  # another replica holds it, or took it after ours expired
            self._revision, self.held = None, False
        except BUS_UNAVAILABLE:  # cannot renew: assume it lapses rather than risk two holders
            self._revision, self.held = None, False
        if self.held != was:
            log.info("lease.taken" if self.held else "lease.lost", lease=self.name, holder=self.holder)
        return self.held

    async def keep(self, stopping: asyncio.Event) -> None:
        """Renew (or try to take) the lease until `stopping`, then hand it back."""
        while not stopping.is_set():
            try:
                await self.renew()
            except Exception:  # anything unforeseen: not holding it is the safe side; try again later
                log.exception("lease.renew_failed", lease=self.name)
                self._revision, self.held = None, False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.ttl_s / 3)
        await self.release()

    async def release(self) -> None:
        if self.held and self._revision is not None:
            with contextlib.suppress(KeyWrongLastSequenceError, KeyNotFoundError, *BUS_UNAVAILABLE):
                await self.kv.delete(self.name, last=self._revision)
        self._revision, self.held = None, False
