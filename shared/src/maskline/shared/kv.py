"""JetStream key-value helpers shared by every bucket the services keep (jobs, models, tta, rounds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.shared import provision
from maskline.shared.bus import read_stream

T = TypeVar("T")


async def open_bucket(js: JetStreamContext, name: str) -> Any:
    """Bind to a bucket of the subject table; provisioning created it (services may not)."""
    return await provision.open_bucket(js, name)


async def get_decoded(kv: Any, key: str, decoder: msgspec.json.Decoder[T]) -> T | None:
    """The value under `key`, decoded; None when there is none (never written, deleted or purged)."""
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, NotFoundError):
        return None
    return decoder.decode(entry.value) if entry.value else None


async def compare_and_set(
    kv: Any, key: str, decoder: msgspec.json.Decoder[T], change: Callable[[T | None], T | None], attempts: int = 50
) -> T | None:
    """Read `key`, apply `change(current) -> new | None` and write with compare-and-set, re-reading
    when a concurrent writer got there first. `change` returning None means "leave it"; the result
    is what the key holds afterwards."""
    for _ in range(attempts):
        try:
            entry = await kv.get(key)
            current, revision = decoder.decode(entry.value), entry.revision
        except (KeyNotFoundError, NotFoundError):
            current, revision = None, None
        new = change(current)
        if new is None:
            return current
        try:
            if revision is None:
                await kv.create(key, msgspec.json.encode(new))
            else:
                await kv.update(key, msgspec.json.encode(new), last=revision)
            return new
        except KeyWrongLastSequenceError:
            continue
    raise RuntimeError(f"key {key!r}: gave up after {attempts} concurrent updates")


async def entries(js: JetStreamContext, bucket: str) -> dict[str, bytes]:
    """Every live key of a bucket with its value, read in one pass over the bucket's stream
    (not `kv.keys()`, which was seen returning an empty list for a non-empty bucket under load)."""
    prefix = f"$KV.{bucket}."
    found: dict[str, bytes] = {}
    for msg in await read_stream(js, f"KV_{bucket}", prefix + ">", last_per_subject=True):
        key = msg.subject[len(prefix) :]
        if (msg.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
            found.pop(key, None)
        else:
            found[key] = msg.data
    return found
