"""The credentials the local container runs share (`./dev compose`, `./dev kube-play`): made once by
`maskline credentials` into `secrets/` and kept, each secret file readable by the images' group."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from maskline.infra.images import ROOT

SECRETS = ROOT / "secrets"
#: Two tenants (tenant-a is an operator: it may verify the whole audit trail).
API_KEYS = "key-a:tenant-a,key-b:tenant-b"
#: The images' user and group (infra/docker/Dockerfile): compose mounts secret files as they are.
IMAGE_GID = 10001


def ensure_credentials() -> None:
    """Re-running keeps every secret (only what is missing is made)."""
    maskline = Path(sys.executable).parent / "maskline"
    subprocess.run([str(maskline), "credentials", "--out", str(SECRETS), "--group", str(IMAGE_GID)], check=True)
