"""Create the streams and key-value buckets of the subject table (the `admin` identity's one job).

Services never create streams or buckets: their credentials do not allow it. The embedded stack
runs this before it starts them; a compose init container or a Helm hook does in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import structlog
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError, ServiceUnavailableError

from maskline.contracts import subjects as table
from maskline.shared.bus import STREAMS, stream_config

log = structlog.get_logger("provision")
T = TypeVar("T")
#: JetStream's "no suitable peers for placement": a cluster that has elected its meta leader while
#: some of its peers are still joining cannot place a replicated stream yet.
NO_PLACEMENT = 10005


async def wait_jetstream(js: JetStreamContext, timeout_s: float = 60.0) -> None:
    """Wait until JetStream answers: a cluster that has just started elects its meta leader first
    (its API answers 503 "temporarily unavailable", or nobody answers, until then)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await js.account_info()
            return
        except (ServiceUnavailableError, NoRespondersError, NatsTimeoutError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"JetStream did not become available in {timeout_s:.0f} s ({exc!r})") from exc
            log.info("provision.waiting_for_jetstream", reason=type(exc).__name__)
            await asyncio.sleep(0.5)


async def placed(create: Callable[[], Awaitable[T]], timeout_s: float = 60.0) -> T:
    """`create` a replicated stream or bucket, waiting while the cluster's peers are still joining."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await create()
        except BadRequestError as exc:
            if exc.err_code != NO_PLACEMENT or asyncio.get_running_loop().time() > deadline:
                raise
            log.info("provision.waiting_for_peers", reason=exc.description)
            await asyncio.sleep(0.5)


#: The fields of a stream's configuration that provisioning sets (the server fills in the rest).
MANAGED = (
    "subjects",
    "storage",
    "num_replicas",
    "duplicate_window",
    "discard",
    "max_age",
    "max_bytes",
    "deny_delete",
    "deny_purge",
)


def differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    return any(getattr(current, field) != getattr(wanted, field) for field in MANAGED)


async def provision(js: JetStreamContext, replicas: int = 1, ttl_s: dict[str, float] | None = None) -> None:
    """Idempotent: creates what is missing, brings existing streams to the table's configuration.
    `ttl_s`: buckets whose age limit a setting chooses (`quality`), applied to an existing one too."""
    ttl_s = ttl_s or {}
    await wait_jetstream(js)
    for name in STREAMS:
        config = stream_config(name, replicas)
        try:
            current = (await js.stream_info(name)).config
        except NotFoundError:
            await placed(partial(js.add_stream, config))
            continue
        # Only a stream that differs is sent again: nats-server reserves a re-added stream's byte cap
        # on top of what it already holds, so re-adding every stream on each start was refused
        # ("insufficient storage resources") once the caps came near the file-store ceiling.
        if differs(current, config):
            await placed(partial(js.update_stream, config))
    for bucket in table.BUCKETS:
        ttl = ttl_s.get(bucket.name, bucket.ttl_s)
        try:
            await js.key_value(bucket.name)
        except (BucketNotFoundError, NotFoundError):
            kv = KeyValueConfig(
                bucket=bucket.name,
                history=1,
                storage=StorageType.FILE,
                replicas=replicas,
                ttl=ttl or None,
                max_bytes=bucket.max_bytes or None,
            )
            await placed(partial(js.create_key_value, kv))
            continue
        if bucket.name in ttl_s:  # the setting changed since the bucket was made: its age limit follows
            config = (await js.stream_info(bucket.stream)).config
            if (config.max_age or 0) != ttl:
                config.max_age = ttl
                await placed(partial(js.update_stream, config))


async def wait_provisioned(js: JetStreamContext, streams: list[str], timeout_s: float = 120.0) -> None:
    """Wait until the streams (and buckets' streams) a service needs exist: provisioning may still run."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    for stream in streams:
        while True:
            try:
                await js.stream_info(stream)
                break
            except NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"stream {stream} does not exist: run provisioning (maskline provision)") from None
                log.info("provision.waiting", stream=stream)
                await asyncio.sleep(1.0)


async def open_bucket(js: JetStreamContext, name: str) -> Any:
    """Bind to a provisioned bucket (services may not create one)."""
    table.bucket(name)  # every bucket a service opens is in the table
    return await js.key_value(name)
