"""Typed configuration from `MASKLINE_*` environment variables, parsed once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

PREFIX = "MASKLINE_"


class ConfigError(SystemExit):
    """A setting is missing or malformed; the process stops with this message."""


class RuntimeSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Settings every service shares. Services subclass it to add their own."""

    nats_url: str = "nats://127.0.0.1:4222"
    """One server, or a comma-separated list of a cluster's servers."""
    nats_identity: str = ""
    """The NATS user to connect as; empty means the service's own name."""
    nats_nkey_file: str = ""
    """File holding the identity's nkey seed (`SU...`); empty: `<nats_credentials_dir>/<identity>.nk`."""
    nats_credentials_dir: str = ""
    """Folder of `<identity>.nk` seed files (the embedded stack's `MASKLINE_HOME/credentials`)."""
    stream_replicas: int = 1
    store: Literal["fs", "minio"] = "fs"
    store_path: str = ".maskline/objects"
    store_check_access: bool = False
    """The filesystem store refuses what the service's grants in `keys.STORE_ACCESS` do not allow,
    as MinIO does under its policy (the embedded stack turns this on)."""
    minio_endpoint: str = "127.0.0.1:9000"
    minio_access_key: str = "maskline"
    minio_secret_key: str = "maskline-secret"
    minio_secret_key_file: str = ""
    """A file holding the secret key (a compose or Kubernetes secret); wins over `minio_secret_key`."""
    minio_bucket: str = "maskline"
    minio_secure: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    instance: str = ""
    """Instance id for logs and the services API; empty means hostname-pid."""
    max_deliver: int = 5
    ack_wait_s: float = 10.0
    """How long a delivered message may go without an ack or an in-progress signal (sent every third
    of it while a handler works) before it is redelivered: a dead worker's messages move on quickly."""
    concurrency: int = 4
    heartbeat_s: float = 2.0
    """Heartbeat interval; an instance silent for 3 intervals is reported stale."""
    health_port: int = 0
    """A worker answers HTTP liveness and readiness probes on this port (`/livez`, `/readyz`; 0: none)."""
    working_max_side: int = 1024
    """Images larger than this per side get a working copy this size; inference, TTA variants and
    fusion run on it, so their cost is bounded whatever the upload (outputs keep the original size)."""
    max_request_pixels: int = 60_000_000
    """Per-request pixel budget: the image plus every TTA variant at the working size."""
    max_backlog: int = 400
    """Messages queued for or held by the pipeline's stages beyond which the gateway refuses new
    jobs (503 `overloaded`); ingest fails requests published straight onto the bus beyond twice it."""

    def identity(self, default: str) -> str:
        return self.nats_identity or default

    def nats_servers(self) -> list[str]:
        """`nats_url` as the list nats-py fails over between (one URL, or a cluster's comma-separated list)."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def minio_secret(self) -> str:
        if self.minio_secret_key_file:
            return Path(self.minio_secret_key_file).read_text().strip()
        return self.minio_secret_key

    def nkey_file(self, identity: str) -> str:
        """Where the seed of `identity` is; empty when none is configured (the server will refuse us)."""
        if self.nats_nkey_file:
            return self.nats_nkey_file
        return os.path.join(self.nats_credentials_dir, f"{identity}.nk") if self.nats_credentials_dir else ""


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
