from __future__ import annotations

from typing import Any, Literal

import msgspec


class StackSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Where and on which ports the embedded stack runs (`MASKLINE_*`, like every setting)."""

    home: str = ".maskline"
    """Data directory: JetStream, objects, Triton repository, logs, pid file."""
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    nats_cluster: int = 1
    """nats-servers of the embedded bus: 1, or a cluster on loopback (3: streams and buckets R3,
    any one node may die). Node i listens on `nats_port + i`, `nats_monitor_port + i`, `nats_route_port + i`."""
    nats_route_port: int = 6222
    nats_url: str = ""
    """An external NATS (one URL or a cluster's comma-separated list): the stack starts no
    nats-server and the services connect there, with the credentials in `<home>/credentials`
    (`maskline credentials --out <home>` writes them and the users block for those servers)."""
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    port: int = 8080
    """Gateway HTTP port."""
    probe_port: int = 0
    """Each worker program answers probes and Prometheus scrapes (`/livez`, `/readyz`, `/metrics`) on
    `probe_port + i`, i its place in `maskline status` (0: none)."""
    api_keys: str = "dev-key:demo"
    sync_interval: str = "always"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    torch_threads: int = 1
    triton_instances: int = 2
    """On a small CPU host two single-threaded model instances beat one two-threaded one:
    measured 19.4 vs 15.0 pipeline jobs/s on 2 cores (docs/benchmarks.md)."""
    infer_instances: int = 1
    """Processes of the infer service (the other services run one each, merge `merge_instances`)."""
    merge_instances: int = 1
    bus_clients: str = ""
    """Outside systems that publish onto NATS themselves, `name:tenant,...`: each gets its own
    credential (`<home>/credentials/<name>.nk`), bound to its tenant."""


#: Ports a stack's probes may take from `probe_port` on (one per worker instance).
PROBE_SPAN = 16


def on_free_ports(base: StackSettings, home: str, **overrides: Any) -> StackSettings:
    """`base` moved to `home` and onto free local ports: a stack that runs beside any other."""
    from maskline.infra.embedded.process import free_ports

    # free_ports never hands out a port twice in one process, so these cannot meet each other or
    # the probes' range (`probe_port`..+PROBE_SPAN, from free_ports too).
    span = max(1, int(overrides.get("nats_cluster", base.nats_cluster)))
    ports: dict[str, int] = {name: free_ports(span) for name in ("nats_port", "nats_monitor_port", "nats_route_port")}
    ports |= {name: free_ports(1) for name in ("triton_http_port", "triton_grpc_port", "triton_metrics_port", "port")}
    return msgspec.structs.replace(base, home=home, **ports, **overrides)
