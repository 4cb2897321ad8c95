"""compose.yaml is validated offline with Debian's docker-compose (no container engine needed),
then read as the data it is: every service of the system table, a healthcheck on every container,
unique NATS node names, no volume shared by infer and Triton, least-privilege secrets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from maskline.contracts.subjects import SERVICES
from maskline.infra.embedded import triton
from maskline.shared import keys
from maskline.shared.config import RuntimeSettings, load

pytestmark = pytest.mark.compose
ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("minio", "minio-setup", "nats-1", "nats-2", "nats-3", "triton", "provision", "proxy", "prometheus")


def compose_config(path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: ./dev test installs Debian's package (apt-get install docker-compose)"
    env = {**os.environ, "MASKLINE_API_KEYS": "ci-key:ci", "MINIO_ROOT_PASSWORD": "ci-root-secret", **variables}
    return subprocess.run([binary, "-f", str(path), "config"], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


@cache
def config(**variables: str) -> dict[str, Any]:
    result = compose_config(ROOT / "compose.yaml", **variables)
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


def test_compose_file_is_valid_and_runs_every_service_of_the_system_table() -> None:
    services = config()["services"]
    assert set(SERVICES) | set(SERVERS) <= set(services)
    assert all(services[s]["environment"]["MASKLINE_STORE"] == "minio" for s in SERVICES)
    assert "--model-control-mode=explicit" in services["triton"]["command"]


def test_every_container_has_a_healthcheck_and_workers_answer_probes() -> None:
    services = config()["services"]
    assert not [name for name, spec in services.items() if not spec.get("healthcheck", {}).get("test")]
    for service in SERVICES:
        spec = services[service]
        if service == "gateway":
            assert "/health/ready" in " ".join(spec["healthcheck"]["test"])
        else:  # python -m maskline.shared.probes asks the worker's own /readyz on MASKLINE_HEALTH_PORT
            assert spec["healthcheck"]["test"] == ["CMD", "python", "-m", "maskline.shared.probes"], service
            assert spec["environment"]["MASKLINE_HEALTH_PORT"] == "9090"


def test_the_cli_images_healthcheck_command_runs() -> None:
    test = config()["services"]["provision"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "maskline"]
    cli = Path(sys.executable).parent / "maskline"  # the console script of this environment
    assert subprocess.run([str(cli), *test[2:]], capture_output=True, timeout=60).returncode == 0


def test_nats_nodes_have_unique_names_and_services_get_every_node_as_a_parsed_list() -> None:
    services = config()["services"]
    names = [services[f"nats-{i}"]["command"][services[f"nats-{i}"]["command"].index("--server_name") + 1] for i in (1, 2, 3)]
    assert names == ["nats-1", "nats-2", "nats-3"]
    for service in SERVICES:
        env = dict(services[service]["environment"])
        assert env.pop("MASKLINE_MINIO_SECRET_KEY_FILE") == "/run/secrets/minio-key"  # read at start; absent here
        settings = load(RuntimeSettings, env)
        assert settings.nats_servers() == [f"nats://nats-{i}:4222" for i in (1, 2, 3)], service
        assert settings.stream_replicas == 3


def test_gateway_replicas_sit_behind_the_proxy() -> None:
    services = config()["services"]
    assert services["gateway"]["deploy"]["replicas"] >= 2
    assert not services["gateway"].get("ports")  # two replicas cannot both map a host port
    assert [str(p["published"]) for p in services["proxy"]["ports"]] == ["8080"]
    caddyfile = (ROOT / "infra" / "proxy" / "Caddyfile").read_text()
    assert "name gateway" in caddyfile and "port 8080" in caddyfile


def test_triton_reads_its_repository_from_the_store_and_shares_no_volume_with_infer() -> None:
    services = config()["services"]
    repository = services["infer"]["environment"]["MASKLINE_TRITON_REPOSITORY"]
    assert repository.startswith("s3://minio:9000/maskline/")
    assert f"--model-repository={repository}" in services["triton"]["command"]
    assert not services["infer"].get("volumes") and not services["triton"].get("volumes")
    assert services["triton"]["environment"]["AWS_ACCESS_KEY_ID"] == "maskline-triton"


def test_tracing_sends_every_services_and_tritons_spans_to_one_collector() -> None:
    def trace_flags(service: dict[str, Any]) -> list[str]:
        return [a for a in service["command"] if a.startswith("--trace-config")]

    assert "--trace-config=level=OFF" in trace_flags(config()["services"]["triton"])  # off unless asked for
    endpoint = "http://otel-collector:4318"
    services = config(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, MASKLINE_TRITON_TRACE_LEVEL="TIMESTAMPS")["services"]
    assert sorted(trace_flags(services["triton"])) == sorted(triton.tracing_flags({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}))
    assert all(services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint for name in SERVICES)


def test_every_service_connects_with_its_own_bus_and_store_credentials() -> None:
    services = config()["services"]
    for service in SERVICES:
        spec = services[service]
        secrets = {s["source"]: s.get("target") for s in spec["secrets"]}
        assert secrets.get(f"nats-{service}") == "nats-nkey", service
        assert secrets.get(f"minio-{service}") == "minio-key", service
        assert spec["environment"]["MASKLINE_NATS_NKEY_FILE"] == "/run/secrets/nats-nkey"
        assert spec["environment"]["MASKLINE_MINIO_ACCESS_KEY"] == f"maskline-{service}"
        assert "MASKLINE_MINIO_SECRET_KEY" not in spec["environment"]  # never the root credentials
    assert set(config()["secrets"]) >= {f"minio-{identity}" for identity in keys.STORE_ACCESS}
    assert "audit-signing-key" in {s["source"] for s in services["audit"]["secrets"]}
    assert 'include "auth.conf"' in (ROOT / "infra" / "nats" / "cluster.conf").read_text()


def test_prometheus_scrapes_every_service_triton_and_every_nats_node(tmp_path: Path) -> None:
    services = config()["services"]
    path = ROOT / "infra" / "prometheus" / "prometheus.yml"
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: ./dev test installs Debian's prometheus package"
    # /etc/prometheus as the container sees it: the config and the chart's alerting rules beside it
    mounts = [v.split(":") for v in services["prometheus"]["volumes"] if v.startswith("/")]
    etc = tmp_path / "etc" / "prometheus"
    etc.mkdir(parents=True)
    for source, target, *_ in mounts:
        assert target.startswith("/etc/prometheus/"), target
        shutil.copy(source, etc / Path(target).name)
    assert yaml.safe_load(path.read_text())["rule_files"] == ["alerts.yaml"]
    alerts = ROOT / "infra" / "helm" / "maskline" / "files" / "alerts.yaml"
    assert (etc / "alerts.yaml").read_text() == alerts.read_text()
    checked = subprocess.run(
        [promtool, "check", "config", str(etc / "prometheus.yml")], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = sum(len(group["rules"]) for group in yaml.safe_load(alerts.read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in checked.stdout, checked.stdout
    scrape = yaml.safe_load(path.read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    assert jobs["maskline-gateway"]["dns_sd_configs"][0]["names"] == ["gateway"]
    workers = jobs["maskline-workers"]["dns_sd_configs"][0]
    assert set(workers["names"]) == set(SERVICES) - {"gateway"} and workers["port"] == 9090
    targets = {t for job in scrape for c in job.get("static_configs", []) for t in c["targets"]}
    assert "triton:8002" in targets
    for i in (1, 2, 3):
        assert f"nats-exporter-{i}:7777" in targets
        assert f"http://nats-{i}:8222" in services[f"nats-exporter-{i}"]["command"]


def test_every_service_is_built_from_its_own_dockerfile_target() -> None:
    dockerfile = (ROOT / "infra" / "docker" / "Dockerfile").read_text()
    for service in SERVICES:
        build = config()["services"][service]["build"]
        assert build["target"] == service, service
        assert f"FROM base AS {service}\n" in dockerfile, service
        stage = dockerfile.split(f"FROM base AS {service}\n", 1)[1].split("\nFROM ", 1)[0]
        # the stage installs its own distribution and no other service's
        assert f"./services/{service}" in stage, service
        assert not [other for other in SERVICES if other != service and f"./services/{other}" in stage], service
    assert config()["services"]["provision"]["build"]["target"] == "cli"


def test_an_invalid_compose_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  gateway:\n    image: x\n    ports: 8080\n    restart: sometimes-maybe\n")
    assert compose_config(bad).returncode != 0


def test_the_podman_overlay_keeps_the_topology_and_pulls_nothing() -> None:
    """`./dev compose` lays infra/podman/compose.podman.yaml over compose.yaml: the same services,
    secrets and replicas, every image local; what has no local build is in the `registry` profile."""
    binary = shutil.which("docker-compose")
    assert binary
    env = {**os.environ, "MASKLINE_API_KEYS": "ci-key:ci", "MINIO_ROOT_PASSWORD": "ci-root-secret"}
    files = ["-f", "compose.yaml", "-f", "infra/podman/compose.podman.yaml"]
    result = subprocess.run([binary, *files, "config"], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    overlaid, plain = yaml.safe_load(result.stdout)["services"], config()["services"]
    started = {name: spec for name, spec in overlaid.items() if "registry" not in spec.get("profiles", [])}
    assert set(SERVICES) | set(SERVERS) <= set(started)
    assert {name for name in overlaid if name not in started} == {"nats-exporter-1", "nats-exporter-2", "nats-exporter-3"}
    assert not [name for name, spec in started.items() if not spec["image"].startswith("localhost/maskline-")]
    for name in SERVICES:
        assert sorted(map(str, overlaid[name]["secrets"])) == sorted(map(str, plain[name]["secrets"])), name
        assert overlaid[name].get("deploy") == plain[name].get("deploy"), name
    for name in started:  # the same start order; health checks replaced only where a stand-in lacks the tool
        assert overlaid[name].get("depends_on") == plain[name].get("depends_on"), name
        if name not in ("minio", "minio-setup", "nats-1", "nats-2", "nats-3"):
            assert overlaid[name].get("healthcheck") == plain[name].get("healthcheck"), name
    assert overlaid["infer"]["environment"]["MASKLINE_TRITON_INSTANCE_KIND"] == "KIND_CPU"
