"""Where the nvidia-pytriton wheel keeps `tritonserver`, and how it must be laid out and started: the
embedded stack (triton.py) and the triton-cpu image (which copies this file in and runs it as its
`tritonserver`) share it. Standard library only, so the image needs nothing of maskline installed.

Traps handled here (see DESIGN.md): the Python-backend stub links against libpython3.11, so
LD_LIBRARY_PATH must point at *this* interpreter's LIBDIR; the backend directory must hold
symlinks (a copied stub loses its RPATH to the bundled libcudart).

    python3 triton_layout.py --backends DIR   # lay out DIR/python (the image, at build time)
    python3 triton_layout.py ARGS...          # become tritonserver --backend-directory=/opt/triton/backends ARGS
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path

#: glibc hands every allocation over 128 KiB to mmap and gives it back on free, so each layer's
#: output costs fresh, zeroed pages: ~1,000 page faults per inference of the starter model. Fixed
#: thresholds keep freed blocks for reuse: 0 faults, INT8 11.1 → 7.4 ms, FP32 20.8 → 17.8 ms per
#: call (one thread, fresh process, docs/benchmarks.md).
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456"
IMAGE_BACKENDS = Path("/opt/triton/backends")


def wheel_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def backends(target: Path) -> Path:
    """`target/python/` made of symlinks into the wheel; returns `target` (Triton's backend directory)."""
    root = wheel_root()
    python = target / "python"
    python.mkdir(parents=True, exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    links = {p.name: p for p in (root / "backends" / "python").iterdir() if p.is_file()}
    links["triton_python_backend_stub"] = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    for name, source in links.items():
        link = python / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    return target


def environment(base: Mapping[str, str], torch_threads: int = 0) -> dict[str, str]:
    """`base` with what the Python-backend stub needs: this interpreter's libpython and packages."""
    env = dict(base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [libdir, env.get("LD_LIBRARY_PATH", "")]))
    # The stub runs the system's embedded interpreter: give it this environment's packages (torch).
    env["PYTHONPATH"] = ":".join(filter(None, [*site.getsitepackages(), env.get("PYTHONPATH", "")]))
    # ...and its interpreter finds its prefix from the `python3` on PATH, as pytriton arranges it.
    env["PATH"] = ":".join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MASKLINE_TORCH_THREADS", str(torch_threads))
    env.setdefault("GLIBC_TUNABLES", MALLOC_TUNABLES)
    return env


def main(argv: list[str]) -> None:
    if argv[:1] == ["--backends"]:
        backends(Path(argv[1]))
        return
    binary = str(wheel_root() / "bin" / "tritonserver")
    os.execve(binary, [binary, f"--backend-directory={IMAGE_BACKENDS}", *argv], environment(os.environ))


if __name__ == "__main__":
    main(sys.argv[1:])
