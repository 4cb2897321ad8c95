"""Leftovers of a Triton that died: its Python-backend stubs (they ignore SIGTERM and outlive
their server, ~320 MB each) and their shared-memory regions in /dev/shm.

Run before Triton starts (`triton_run`) and after the stack stops, so a crash or a kill -9 of
tritonserver never accumulates orphans.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

STUB = "triton_python_backend_stub"
SHM_PREFIX = "triton_python_backend_shm_region_"


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def stubs(home: Path) -> list[int]:
    """Stub processes of the stack in `home` (their command line names its model repository)."""
    marker = str(home.resolve())
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and STUB in (line := _cmdline(p)) and marker in line]


def _mapped() -> set[str]:
    """Names of /dev/shm files some living process has mapped."""
    names: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text(errors="replace").splitlines():
                if "/dev/shm/" in line:
                    names.add(line.rsplit("/dev/shm/", 1)[1].split(" ")[0])
    return names


def shm_regions() -> list[Path]:
    """Triton stub regions no living process maps any more (any stack's: they are unused)."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return []
    mapped = _mapped()
    return [p for p in shm.iterdir() if p.name.startswith(SHM_PREFIX) and p.name not in mapped]


def reap(home: Path) -> tuple[int, int]:
    """Kill this stack's orphaned stubs and remove unused regions; returns (stubs, regions)."""
    killed = 0
    for pid in stubs(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    regions = shm_regions()
    for region in regions:
        region.unlink(missing_ok=True)
    return killed, len(regions)
