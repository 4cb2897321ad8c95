"""Run the `tritonserver` binary shipped in the nvidia-pytriton wheel, with explicit model control.

Traps handled here (see DESIGN.md): the Python-backend stub links against libpython3.11, so
LD_LIBRARY_PATH must point at *this* interpreter's LIBDIR; the backend directory must hold
symlinks (a copied stub loses its RPATH to the bundled libcudart).
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from maskline.infra.embedded.process import spawn, wait_until
from maskline.shared import tracing
from maskline.shared.probes import probe


def wheel_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def backend_dir(data_dir: Path) -> Path:
    """`<data>/triton/backends/python/` made of symlinks into the wheel."""
    root = wheel_root()
    target = data_dir / "triton" / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    links = {p.name: p for p in (root / "backends" / "python").iterdir() if p.is_file()}
    links["triton_python_backend_stub"] = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    for name, source in links.items():
        link = target / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    return target.parent


#: glibc hands every allocation over 128 KiB to mmap and gives it back on free, so each layer's
#: output costs fresh, zeroed pages: ~1,000 page faults per inference of the starter model. Fixed
#: thresholds keep freed blocks for reuse: 0 faults, INT8 11.1 → 7.4 ms, FP32 20.8 → 17.8 ms per
#: call (one thread, fresh process, docs/benchmarks.md).
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456"


def triton_env(torch_threads: int = 0) -> dict[str, str]:
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [libdir, env.get("LD_LIBRARY_PATH", "")]))
    # The stub runs the system's embedded interpreter: give it this environment's packages (torch).
    env["PYTHONPATH"] = ":".join(filter(None, [*site.getsitepackages(), env.get("PYTHONPATH", "")]))
    # ...and its interpreter finds its prefix from the `python3` on PATH, as pytriton arranges it.
    env["PATH"] = ":".join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MASKLINE_TORCH_THREADS", str(torch_threads))
    env.setdefault("GLIBC_TUNABLES", MALLOC_TUNABLES)
    return env


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
