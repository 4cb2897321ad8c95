"""JetStream key-value helpers shared by every bucket the services keep (jobs, models, tta, rounds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

T = TypeVar("T")


async def open_bucket(js: JetStreamContext, name: str, *, replicas: int = 1, ttl_s: float = 0.0) -> Any:
    """The bucket, created on first use (file storage, one revision per key)."""
    try:
        return await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(
            KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE, replicas=replicas, ttl=ttl_s or None)
        )


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
    """Every live key of a bucket with its value, read in one pass over the bucket's stream.

    nats-py's `kv.keys()` watches with a short idle timeout and was seen here returning an empty
    list for a non-empty bucket on a loaded machine; counting the consumer's pending messages up
    front makes the read complete or fail loudly instead.
    """
    config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, ack_policy=AckPolicy.NONE, inactive_threshold=30.0)
    prefix = f"$KV.{bucket}."
    sub = await js.pull_subscribe(prefix + ">", stream=f"KV_{bucket}", config=config)
    found: dict[str, bytes] = {}
    try:
        remaining = (await sub.consumer_info()).num_pending or 0
        while remaining > 0:
            msgs = await sub.fetch(min(remaining, 256), timeout=5.0)
            remaining -= len(msgs)
            for msg in msgs:
                operation = (msg.headers or {}).get("KV-Operation")
                key = msg.subject[len(prefix) :]
                if operation in ("DEL", "PURGE"):
                    found.pop(key, None)
                else:
                    found[key] = msg.data
    finally:
        await sub.unsubscribe()
    return found
