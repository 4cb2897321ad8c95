"""Run the `tritonserver` binary shipped in the nvidia-pytriton wheel, with explicit model control
(its layout and environment: triton_layout.py, shared with the triton-cpu image)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from maskline.infra.embedded.process import spawn, wait_until
from maskline.infra.embedded.triton_layout import MALLOC_TUNABLES, backends, environment, wheel_root
from maskline.shared import tracing
from maskline.shared.probes import probe

__all__ = ["MALLOC_TUNABLES", "backend_dir", "command", "triton_env", "wheel_root"]


def backend_dir(data_dir: Path) -> Path:
    """`<data>/triton/backends/python/` made of symlinks into the wheel."""
    return backends(data_dir / "triton" / "backends")


def triton_env(torch_threads: int = 0) -> dict[str, str]:
    return environment(os.environ, torch_threads)


def http_ready(port: int) -> bool:
    return probe(port, "/v2/health/ready", timeout_s=0.5)


def tracing_flags(env: Mapping[str, str]) -> list[str]:
    """Triton's own OpenTelemetry spans (request, queue, compute), sent where the services send theirs.
    Triton continues the `traceparent` infer passes, so its spans join the job's trace."""
    url = tracing.otlp_traces_url(env)
    if url is None:
        return []
    return [
        "--trace-config=mode=opentelemetry",
        f"--trace-config=opentelemetry,url={url}",
        "--trace-config=opentelemetry,resource=service.name=maskline-triton",
        "--trace-config=level=TIMESTAMPS",
        "--trace-config=rate=1",  # every request is traced
    ]


def command(
    data_dir: Path,
    repository: Path | str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    env: Mapping[str, str] = os.environ,
) -> list[str]:
    """`repository`: a folder, or an S3 repository `s3://host:port/bucket/prefix` (credentials from
    the standard AWS_* variables). Tracing is on when `env`'s OTEL_* variables export spans."""
    if isinstance(repository, Path):
        repository.mkdir(parents=True, exist_ok=True)
    return [
        str(wheel_root() / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        "--model-control-mode=explicit",
        f"--backend-directory={backend_dir(data_dir)}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--exit-timeout-secs=3",
        "--log-verbose=0",
        *tracing_flags(env),
    ]


def start_triton(
    data_dir: Path,
    repository: Path | str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    *,
    torch_threads: int = 0,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """A tritonserver of its own (tests); the embedded stack runs it under its supervisor."""
    argv = command(data_dir, repository, http_port, grpc_port, metrics_port)
    log = data_dir / "logs" / "triton.log"
    proc = spawn(argv, log, env=triton_env(torch_threads) | (env or {}))
    wait_until(lambda: http_ready(http_port), 60, "tritonserver", proc, log)
    return proc
