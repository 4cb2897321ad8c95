"""Lay out Triton's backend directory from the nvidia-pytriton wheel (as the embedded stack does):
symlinks, because a copied Python-backend stub loses its RPATH to the libraries beside it.

    python3 triton_backends.py /opt/triton   # -> /opt/triton/backends/python/*, /opt/triton/bin
"""

import sys
from pathlib import Path

import pytriton

root = Path(pytriton.__file__).parent / "tritonserver"
home = Path(sys.argv[1])
backend = home / "backends" / "python"
backend.mkdir(parents=True)
for part in (root / "backends" / "python").iterdir():
    if part.is_file():
        (backend / part.name).symlink_to(part)
version = f"{sys.version_info.major}.{sys.version_info.minor}"
(backend / "triton_python_backend_stub").symlink_to(root / "python_backend_stubs" / version / "triton_python_backend_stub")
(home / "bin").symlink_to(root / "bin")
