"""compose.yaml is validated offline with Debian's docker-compose (no container engine needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.compose
ROOT = Path(__file__).resolve().parents[2]


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: ./dev test installs Debian's package (apt-get install docker-compose)"
    env = {**os.environ, "MASKLINE_API_KEYS": "ci-key:ci"}
    return subprocess.run([binary, "-f", str(path), "config"], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


def test_compose_file_is_valid_and_runs_every_service_in_its_own_container() -> None:
    result = compose_config(ROOT / "compose.yaml")
    assert result.returncode == 0, result.stderr
    for service in ("minio", "nats-1", "nats-2", "nats-3", "triton", "gateway", "ingest", "infer", "merge", "audit"):
        assert f"\n  {service}:\n" in result.stdout, service
    assert "MASKLINE_STORE: minio" in result.stdout
    assert "--model-control-mode=explicit" in result.stdout


def test_an_invalid_compose_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  gateway:\n    image: x\n    ports: 8080\n    restart: sometimes-maybe\n")
    assert compose_config(bad).returncode != 0
