"""Child processes of the embedded stack: start with a log file, wait until ready, stop gently."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

# Ports handed out by this process, so two calls never return the same one before either is bound.
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _candidates() -> range:
    """Ports outside the kernel's ephemeral range.

    A port from `bind(0)` is an ephemeral one: between choosing it and the server binding it, any
    outgoing connection (a service's own NATS connection, which then lives for the whole run) may
    take it as its local port, and the server fails with EADDRINUSE until that connection closes.
    Ports the kernel never hands to outgoing connections cannot be taken that way.
    """
    low, high = _ephemeral_range()
    if low - 20000 >= 2000:
        return range(20000, low)
    return range(high + 1, 65536)


def free_port() -> int:
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (a cluster's nodes take port, port + 1, ...)."""
    candidates = _candidates()
    for _ in range(200):
        first = random.randrange(candidates.start, candidates.stop - count + 1)
        ports = range(first, first + count)
        if _handed_out.isdisjoint(ports) and all(_bindable(port) for port in ports):
            _handed_out.update(ports)
            return first
    raise RuntimeError(f"no {count} consecutive free ports found in {candidates}")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path and log_path.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready\n{tail}")
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s" + (f" (see {log_path})" if log_path else ""))


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`: services drain, servers close."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return
        except ChildProcessError:
            pass  # not our child: poll with kill(0) only
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
