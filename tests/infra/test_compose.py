"""compose.yaml is validated offline with Debian's docker-compose (no container engine needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from maskline.contracts.subjects import SERVICES

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
    for service in ("minio", "nats-1", "nats-2", "nats-3", "triton", "provision", *SERVICES):
        assert f"\n  {service}:\n" in result.stdout, service
    assert "MASKLINE_STORE: minio" in result.stdout
    assert "--model-control-mode=explicit" in result.stdout


def test_every_service_connects_with_its_own_bus_credential() -> None:
    config = yaml.safe_load(compose_config(ROOT / "compose.yaml").stdout)
    for service in SERVICES:
        spec = config["services"][service]
        secrets = {s["source"]: s.get("target") for s in spec["secrets"]}
        assert secrets.get(f"nats-{service}") == "nats-nkey", service
        assert spec["environment"]["MASKLINE_NATS_NKEY_FILE"] == "/run/secrets/nats-nkey"
    assert "audit-signing-key" in {s["source"] for s in config["services"]["audit"]["secrets"]}
    assert 'include "auth.conf"' in (ROOT / "infra" / "nats" / "cluster.conf").read_text()


def test_every_service_is_built_from_its_own_dockerfile_target() -> None:
    config = yaml.safe_load(compose_config(ROOT / "compose.yaml").stdout)
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    for service in SERVICES:
        build = config["services"][service]["build"]
        assert build["target"] == service, service
        assert f"FROM base AS {service}\n" in dockerfile, service
        stage = dockerfile.split(f"FROM base AS {service}\n", 1)[1].split("\nFROM ", 1)[0]
        # the stage installs its own distribution and no other service's
        assert f"./services/{service}" in stage, service
        assert not [other for other in SERVICES if other != service and f"./services/{other}" in stage], service
    assert config["services"]["provision"]["build"]["target"] == "cli"


def test_an_invalid_compose_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  gateway:\n    image: x\n    ports: 8080\n    restart: sometimes-maybe\n")
    assert compose_config(bad).returncode != 0
