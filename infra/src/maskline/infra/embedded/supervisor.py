"""The embedded stack's process supervisor: supervisord (PyPI `supervisor`), configured per home.

Why supervisord and not our own loop: restarts with back-off, process groups (Triton's stubs stop
with it), log files, and a control API (`supervisorctl`, XML-RPC) are what it has done for twenty
years. We write its configuration, start it, and talk to it over its UNIX socket.

A program that exits cleanly (a service drained after SIGTERM) stays stopped; one that crashes or
is killed is restarted after a short back-off.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from maskline.infra.embedded.process import wait_until

CONF = "supervisord.conf"
SOCKET = "supervisord.sock"


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    priority: int
    environment: dict[str, str] = field(default_factory=dict)
    """Overrides of the supervisor's own environment (which every program inherits)."""
    stop_wait_s: int = 25
    nice: int = 0
    """CPU priority (nice increment): batch compute yields to the front door and the bus."""


def _quote(value: str) -> str:
    # supervisord expands %(name)s in its configuration and reads values as shell-like words.
    return '"' + value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(home: Path, programs: list[Program]) -> str:
    logs = home / "logs"
    lines = [
        "; written by maskline: edit MASKLINE_* settings instead",
        "[unix_http_server]",
        f"file={home / SOCKET}",
        "chmod=0700",
        "[supervisord]",
        f"logfile={logs / 'supervisord.log'}",
        f"pidfile={home / 'supervisord.pid'}",
        f"directory={home}",
        "loglevel=info",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{home / SOCKET}",
    ]
    for p in programs:
        lines += [
            f"[program:{p.name}]",
            "command=" + " ".join(_quote(a) for a in (["nice", "-n", str(p.nice)] if p.nice else []) + p.command),
            f"priority={p.priority}",
            "autostart=true",
            # A clean exit (a drained service) stays down; a crash or a kill is restarted.
            "autorestart=unexpected",
            "exitcodes=0",
            "startsecs=1",
            "startretries=100",
            f"stopwaitsecs={p.stop_wait_s}",
            "stopsignal=TERM",
            "stopasgroup=true",
            "killasgroup=true",
            f"stdout_logfile={logs / (p.name + '.log')}",
            "stdout_logfile_maxbytes=50MB",
            "redirect_stderr=true",
        ]
        if p.environment:
            lines.append("environment=" + ",".join(f"{k}={_quote(v)}" for k, v in p.environment.items()))
    return "\n".join(lines) + "\n"


class Supervisor:
    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    def socket(self) -> Path:
        return self.home / SOCKET

    def rpc(self) -> Any:
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def start(self, programs: list[Program], env: dict[str, str]) -> None:
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        conf = self.home / CONF
        conf.write_text(render(self.home, programs))
        binary = Path(sys.executable).parent / "supervisord"
        subprocess.run([str(binary), "-c", str(conf)], env=env, check=True)  # daemonizes itself
        wait_until(self.answers, 20, "supervisord", log_path=self.home / "logs" / "supervisord.log")

    def answers(self) -> bool:
        try:
            return bool(self.rpc().getState()["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Fault):
            return False

    def processes(self) -> list[dict[str, Any]]:
        return list(self.rpc().getAllProcessInfo())

    def pids(self) -> dict[str, int]:
        return {p["name"]: int(p["pid"]) for p in self.processes() if p["pid"]}

    def start_program(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):  # ALREADY_STARTED
            self.rpc().startProcess(name)

    def stop_program(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING
            self.rpc().stopProcess(name)

    def kill_program(self, name: str) -> None:
        """SIGKILL the program's process (a crash): the supervisor restarts it."""
        self.rpc().signalProcess(name, "KILL")

    def restarts(self) -> dict[str, int]:
        """How often each program was started again after its first start (from supervisord's log)."""
        log = self.home / "logs" / "supervisord.log"
        counts: dict[str, int] = {}
        if log.exists():
            for line in log.read_text(errors="replace").splitlines():
                if " spawned: '" in line:
                    name = line.split(" spawned: '", 1)[1].split("'", 1)[0]
                    counts[name] = counts.get(name, 0) + 1
        return {name: max(0, n - 1) for name, n in counts.items()}

    def shutdown(self, timeout_s: float = 90.0) -> None:
        """Stop every program (each whole process group) and the supervisor itself."""
        pidfile = self.home / "supervisord.pid"
        pid = int(pidfile.read_text()) if pidfile.exists() else None
        with contextlib.suppress(OSError, xmlrpc.client.Fault):
            self.rpc().shutdown()
        deadline = time.monotonic() + timeout_s
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
