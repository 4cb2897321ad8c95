"""CPU time of processes and their descendants, read from /proc (Linux), for per-job accounting.

    before = cpu_seconds(pids); ... run N jobs ...; per_job_ms(before, cpu_seconds(pids), N)

A process's descendants count with it: Triton's Python-backend stubs are children of tritonserver.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of one live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """Label → CPU seconds of that process and all its live descendants."""
    parents: dict[int, int] = {}
    own: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], own[int(entry.name)] = found
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)

    def tree(pid: int) -> float:
        return own.get(pid, 0.0) + sum(tree(child) for child in children.get(pid, []))

    return {label: tree(pid) for label, pid in pids.items()}


def per_job_ms(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
    """CPU milliseconds per job of each process between two readings, and their sum as `total`."""
    spent = {label: round((after[label] - before.get(label, 0.0)) * 1000 / jobs, 2) for label in after}
    return {**spent, "total": round(sum(spent.values()), 2)}
