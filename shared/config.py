"""Typed configuration from `MASKLINE_*` environment variables, parsed once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, TypeVar

import msgspec

PREFIX = "MASKLINE_"


class ConfigError(SystemExit):
    """A setting is missing or malformed; the process stops with this message."""


class RuntimeSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Settings every service shares. Services subclass it to add their own."""

    nats_url: str = "nats://127.0.0.1:4222"
    stream_replicas: int = 1
    store: Literal["fs", "minio"] = "fs"
    store_path: str = ".maskline/objects"
    minio_endpoint: str = "127.0.0.1:9000"
    minio_access_key: str = "maskline"
    minio_secret_key: str = "maskline-secret"
    minio_bucket: str = "maskline"
    minio_secure: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    instance: str = ""
    """Instance id for logs and the services API; empty means hostname-pid."""
    max_deliver: int = 5
    ack_wait_s: float = 60.0
    concurrency: int = 4
    heartbeat_s: float = 2.0
    """Heartbeat interval; an instance silent for 3 intervals is reported stale."""


S = TypeVar("S", bound=msgspec.Struct)


def load(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read `cls` from the environment (`MASKLINE_NATS_URL` -> `nats_url`), or stop clearly."""
    env = os.environ if environ is None else environ
    names = {f.name for f in msgspec.structs.fields(cls)}
    raw = {key[len(PREFIX) :].lower(): value for key, value in env.items() if key.startswith(PREFIX)}
    try:
        return msgspec.convert({k: v for k, v in raw.items() if k in names}, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"maskline: bad configuration for {cls.__name__}: {exc} (set {PREFIX}<NAME>)") from exc
