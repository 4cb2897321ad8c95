"""Start tritonserver for the embedded stack's supervisor: reap a dead predecessor's stubs and
shared memory first, then become tritonserver (exec, so the supervisor signals Triton itself).

    python -m maskline.infra.embedded.triton_run HOME HTTP GRPC METRICS TORCH_THREADS
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from maskline.infra.embedded import reap, triton


def main(argv: list[str]) -> None:
    home, http, grpc, metrics, threads = Path(argv[0]), *(int(v) for v in argv[1:5])
    stubs, regions = reap.reap(home)
    if stubs or regions:
        print(f"reaped {stubs} orphaned Python-backend stubs and {regions} shared-memory regions", flush=True)
    command = triton.command(home, home / "triton" / "models", http, grpc, metrics)
    os.execve(command[0], command, triton.triton_env(threads))


if __name__ == "__main__":
    main(sys.argv[1:])
