#!/bin/sh
# tritonserver from the nvidia-pytriton wheel: its Python-backend stub links against this venv's
# libpython (LD_LIBRARY_PATH) and loads the venv's packages (PYTHONPATH); the backends are symlinks
# into the wheel (a copied stub loses its RPATH). Same flags otherwise as NVIDIA's image.
set -e
libdir=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
site=$(python3 -c 'import site; print(":".join(site.getsitepackages()))')
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456}"
exec /opt/triton/bin/tritonserver --backend-directory=/opt/triton/backends "$@"
