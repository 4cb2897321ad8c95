"""Typed configuration from `MASKLINE_*` environment variables, parsed once at start."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, TypeVar

import msgspec

from maskline.shared.setting_names import KNOWN

PREFIX = "MASKLINE_"
FILE_SUFFIX = "_FILE"
_reported: set[str] = set()


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
    quality_retention_days: float = 30.0
    """How long the hourly quality summaries are kept (provisioning sets the `quality` bucket's age
    limit; docs/monitoring.md)."""
    store: Literal["fs", "minio"] = "fs"
    store_path: str = ".maskline/objects"
    store_check_access: bool = False
    """The filesystem store refuses what the service's grants in `keys.STORE_ACCESS` do not allow,
    as MinIO does under its policy (the embedded stack turns this on)."""
    minio_endpoint: str = "127.0.0.1:9000"
    minio_access_key: str = "maskline"
    minio_secret_key: str = "maskline-secret"
    """Or from a file (a compose or Kubernetes secret): MASKLINE_MINIO_SECRET_KEY_FILE, as every setting."""
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
    webhook_allow_private: bool = False
    """Webhooks may call private and loopback addresses (tests, receivers inside your network);
    off, only public addresses are called (no SSRF into the platform's own network)."""
    health_port: int = 0
    """A worker answers HTTP liveness and readiness probes on this port (`/livez`, `/readyz`; 0: none)."""
    working_max_side: int = 1024
    """Images larger than this per side get a working copy this size; inference, TTA variants and
    fusion run on it, so their cost is bounded whatever the upload (outputs keep the original size)."""
    max_request_pixels: int = 60_000_000
    """Per-request pixel budget: the image plus every TTA variant at the working size."""
    max_backlog: int = 400
    """Messages queued for or held by the pipeline's stages beyond which the gateway refuses new
    jobs (503 `overloaded`); ingest fails requests beyond twice it, whoever published them."""
    tenant_rate_per_s: float = 50.0
    """Jobs a tenant may start per second (token bucket; a TTA segmentation costs one per variant):
    per gateway replica over HTTP, and at twice it in each service that takes a kind of job off the bus."""
    tenant_burst: float = 100.0
    tenant_max_jobs: int = 200
    """Jobs of one tenant admitted and not finished yet, beyond which the gateway answers 429 and a
    service fails a job published straight onto the bus (at twice it) as `too_many_jobs`."""
    tenant_limits: str = ""
    """Per-tenant overrides, `tenant:rate/burst/jobs;...` (e.g. `trial:1/2/3`)."""

    def limits_of(self) -> dict[str, tuple[float, float, int]]:
        """`tenant_limits` as tenant → (rate per s, burst, max unfinished jobs)."""
        found: dict[str, tuple[float, float, int]] = {}
        for item in filter(None, (p.strip() for p in self.tenant_limits.split(";"))):
            tenant, _, spec = item.partition(":")
            try:
                rate, burst, jobs = spec.split("/")
                found[tenant] = (float(rate), float(burst), int(jobs))
            except ValueError as exc:
                raise ConfigError(f"maskline: MASKLINE_TENANT_LIMITS entry {item!r} is not tenant:rate/burst/jobs") from exc
        return found

    def identity(self, default: str) -> str:
        return self.nats_identity or default

    def nats_servers(self) -> list[str]:
        """`nats_url` as the list nats-py fails over between (one URL, or a cluster's comma-separated list)."""
        return [u.strip() for u in self.nats_url.split(",") if u.strip()]

    def nkey_file(self, identity: str) -> str:
        """Where the seed of `identity` is; empty when none is configured (the server will refuse us)."""
        if self.nats_nkey_file:
            return self.nats_nkey_file
        return os.path.join(self.nats_credentials_dir, f"{identity}.nk") if self.nats_credentials_dir else ""


S = TypeVar("S", bound=msgspec.Struct)


def load(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read `cls` from the environment (`MASKLINE_NATS_URL` -> `nats_url`), or stop clearly.

    Any setting may come from a file instead, `MASKLINE_<NAME>_FILE` (a secret mounted by compose or
    Kubernetes; its content, stripped). Variables no maskline program reads are reported (once per
    process, naming the nearest known one); with MASKLINE_STRICT_CONFIG=true they stop the process."""
    env = os.environ if environ is None else environ
    names = {f.name for f in msgspec.structs.fields(cls)}
    raw = {key[len(PREFIX) :].lower(): value for key, value in env.items() if key.startswith(PREFIX)}
    _report_unknown(env)
    for key in [k for k in raw if k.upper().endswith(FILE_SUFFIX) and k not in names]:
        name = key[: -len(FILE_SUFFIX)]
        if name not in names:
            continue
        if name in raw:
            raise ConfigError(f"maskline: set {PREFIX}{name.upper()} or {PREFIX}{key.upper()}, not both")
        try:
            raw[name] = Path(raw[key]).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"maskline: {PREFIX}{key.upper()}: cannot read {raw[key]!r} ({exc.strerror})") from exc
    try:
        return msgspec.convert({k: v for k, v in raw.items() if k in names}, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"maskline: bad configuration for {cls.__name__}: {exc} (set {PREFIX}<NAME>)") from exc


def unknown_settings(environ: Mapping[str, str]) -> dict[str, str | None]:
    """`MASKLINE_*` variables no maskline program reads → the nearest known name (None if none is close)."""
    found: dict[str, str | None] = {}
    for key in environ:
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        if name in KNOWN or (name.endswith(FILE_SUFFIX) and name[: -len(FILE_SUFFIX)] in KNOWN):
            continue
        nearest = difflib.get_close_matches(name.removesuffix(FILE_SUFFIX), KNOWN, n=1, cutoff=0.6)
        found[key] = PREFIX + nearest[0] + (FILE_SUFFIX if name.endswith(FILE_SUFFIX) else "") if nearest else None
    return found


def _report_unknown(environ: Mapping[str, str]) -> None:
    unknown = unknown_settings(environ)
    if not unknown:
        return
    lines = [f"{key} is not a maskline setting" + (f" (did you mean {near}?)" if near else "") for key, near in unknown.items()]
    if str(environ.get(PREFIX + "STRICT_CONFIG", "")).lower() in ("1", "true", "yes"):
        raise ConfigError("maskline: " + "; ".join(lines) + " (MASKLINE_STRICT_CONFIG is on)")
    for line in lines:
        if line not in _reported:  # once per process: settings are loaded more than once
            _reported.add(line)
            print(f"maskline: warning: {line}", file=sys.stderr)
