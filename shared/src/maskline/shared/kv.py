"""JetStream key-value helpers shared by every bucket the services keep (jobs, models, tta, rounds)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.shared import provision
from maskline.shared.bus import read_stream

T = TypeVar("T")
log = structlog.get_logger("kv")


async def open_bucket(js: JetStreamContext, name: str) -> Any:
    """Bind to a bucket of the subject table; provisioning created it (services may not)."""
    return await provision.open_bucket(js, name)


class BucketStore:
    """A key-value store a service keeps (job state, the registry, fences, ...): one bucket of the
    subject table, bound on `open` (provisioning made it; services may not). Open one with
    `await Store.opened(js, ...)`; using it before then is a programming error, said at once."""

    BUCKET: ClassVar[str]

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._bound: Any = None

    async def open(self) -> Self:
        self._bound = await open_bucket(self.js, self.BUCKET)
        return self

    @classmethod
    async def opened(cls, js: JetStreamContext, *args: Any, **kwargs: Any) -> Self:
        """A store of this kind, bound to its bucket (the constructor's own arguments after `js`)."""
        store = cls(js, *args, **kwargs)
        await store.open()
        return store

    @property
    def kv(self) -> Any:
        if self._bound is None:
            raise RuntimeError(f"{type(self).__name__} used before open(): `await {type(self).__name__}.opened(js)`")
        return self._bound


async def get_decoded(kv: Any, key: str, decoder: msgspec.json.Decoder[T]) -> T | None:
    """The value under `key`, decoded; None when there is none (never written, deleted or purged)."""
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, NotFoundError):
        return None
    return decoder.decode(entry.value) if entry.value else None


class Revisions:
    """What this process last read or wrote under each key, with the revision: a compare-and-set may
    start from it instead of reading the key first. A stale entry costs only the read it saved (the
    write is refused and the key read); a fold that would change nothing is checked against a fresh
    read before it is believed. Bounded: the least recently used keys are forgotten."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._known: OrderedDict[str, tuple[bytes, int]] = OrderedDict()

    def get(self, key: str) -> tuple[bytes, int] | None:
        found = self._known.get(key)
        if found is not None:
            self._known.move_to_end(key)
        return found

    def put(self, key: str, value: bytes, revision: int) -> None:
        self._known[key] = (value, revision)
        self._known.move_to_end(key)
        while len(self._known) > self.size:
            self._known.popitem(last=False)

    def forget(self, key: str) -> None:
        self._known.pop(key, None)


async def compare_and_set(
    kv: Any,
    key: str,
    decoder: msgspec.json.Decoder[T],
    change: Callable[[T | None], T | None],
    attempts: int = 50,
    revisions: Revisions | None = None,
) -> T | None:
    """Read `key`, apply `change(current) -> new | None` and write with compare-and-set, re-reading
    when a concurrent writer got there first. `change` returning None means "leave it"; the result
    is what the key holds afterwards. With `revisions`, the first attempt starts from what this
    process last saw of the key, when it saw it (no read)."""
    for attempt in range(attempts):
        remembered = revisions.get(key) if revisions is not None and attempt == 0 else None
        if remembered is not None:
            current, revision = decoder.decode(remembered[0]), remembered[1]
        else:
            try:
                entry = await kv.get(key)
                current, revision = decoder.decode(entry.value), entry.revision
                if revisions is not None:
                    revisions.put(key, entry.value, int(entry.revision))
            except (KeyNotFoundError, NotFoundError):
                current, revision = None, None
        new = change(current)
        if new is None:
            if remembered is not None:
                continue  # "nothing to change" is believed of a fresh read only
            return current
        data = msgspec.json.encode(new)
        try:
            if revision is None:
                written = await kv.create(key, data)
            else:
                written = await kv.update(key, data, last=revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            # nats-py's create() reads the key back when its sequence check fails; during a stream
            # leader's failover that read may find nothing (KeyNotFoundError): a race like any other.
            if revisions is not None:
                revisions.forget(key)
            continue
        if revisions is not None:
            revisions.put(key, data, int(written))
        return new
    raise RuntimeError(f"key {key!r}: gave up after {attempts} concurrent updates")


async def entries(js: JetStreamContext, bucket: str, keys: str = ">") -> dict[str, bytes]:
    """Every live key of a bucket (matching the `keys` pattern) with its value, read in one pass over
    the bucket's stream (not `kv.keys()`, which was seen returning an empty list for a non-empty
    bucket under load)."""
    prefix = f"$KV.{bucket}."
    found: dict[str, bytes] = {}
    for msg in await read_stream(js, f"KV_{bucket}", prefix + keys, last_per_subject=True):
        key = msg.subject[len(prefix) :]
        if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
            found.pop(key, None)
        else:
            found[key] = msg.data
    return found


class BucketMirror(Generic[T]):
    """Every key of a bucket with its current value, in this process's memory: the server pushes
    each change as it is written (an ordered view, no acknowledgements), so a lookup costs no bus
    round trip. For small buckets read on every message (a tenant's webhook record). The view is
    in the server's memory and a restarted server forgets it: `keep` checks it and starts again."""

    CHECK_EVERY_S = 2.0

    def __init__(self, js: JetStreamContext, bucket: str, decoder: msgspec.json.Decoder[T]) -> None:
        self.js, self.bucket, self.decoder = js, bucket, decoder
        self.values: dict[str, T] = {}
        self._prefix = f"$KV.{bucket}."
        self._sub: Any = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Follow the bucket from its current values on; returns once they are all here."""
        self._ready.clear()
        config = ConsumerConfig(
            name=f"mirror-{uuid.uuid4().hex[:12]}",
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            inactive_threshold=60.0,
            mem_storage=True,
        )
        self._sub = await self.js.subscribe(
            f"{self._prefix}>", stream=f"KV_{self.bucket}", cb=self._on_change, manual_ack=True, config=config
        )
        pending = (await self._sub.consumer_info()).num_pending or 0
        if pending == 0:
            self._ready.set()
        await asyncio.wait_for(self._ready.wait(), 10.0)

    async def _on_change(self, msg: Msg) -> None:
        key = msg.subject[len(self._prefix) :]
        if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE") or not msg.data:
            self.values.pop(key, None)
        else:
            try:
                self.values[key] = self.decoder.decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                log.warning("kv.mirror_undecodable", bucket=self.bucket, key=key, error=str(exc))
        if msg.metadata.num_pending == 0:
            self._ready.set()

    def get(self, key: str) -> T | None:
        return self.values.get(key)

    async def keep(self, stopping: asyncio.Event) -> None:
        """Start the view again when the server lost it (a restarted nats-server)."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.CHECK_EVERY_S)
            try:
                await self._sub.consumer_info()
                continue
            except NotFoundError:
                log.warning("kv.mirror_lost", bucket=self.bucket)
            except Exception:
                continue  # the bus is away: check again later
            try:
                with contextlib.suppress(Exception):
                    await self._sub.unsubscribe()
                self.values = {}
                await self.start()
            except Exception as exc:
                log.warning("kv.mirror_restart_failed", bucket=self.bucket, error=str(exc))
