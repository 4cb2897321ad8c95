"""The alerting rules (infra/helm/maskline/files/alerts.yaml, loaded by the chart's PrometheusRule
and by compose's Prometheus): valid for Prometheus (`promtool check rules`), firing and staying
quiet as tests/infra/alerts.test.yaml says (`promtool test rules`), on metrics the services export."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "infra" / "helm" / "maskline" / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts.test.yaml"
EXPORTERS = [
    ROOT / "services" / "gateway" / "src" / "maskline" / "services" / "gateway" / "operations" / "metrics.py",
    ROOT / "shared" / "src" / "maskline" / "shared" / "operations" / "metrics.py",
    ROOT / "services" / "audit" / "src" / "maskline" / "services" / "audit" / "quality.py",
    ROOT / "services" / "infer" / "src" / "maskline" / "services" / "infer" / "triton.py",
]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: ./dev test installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=UNIT_TESTS.parent)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_the_rules_are_valid_for_prometheus() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_each_alert_fires_when_it_should_and_only_then() -> None:
    tested = promtool("test", "rules", UNIT_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    covered = {test["alertname"] for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for test in case["alert_rule_test"]}
    assert len(covered) >= 4, covered


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    for rule in rules():
        assert rule["alert"].startswith("Maskline"), rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_every_maskline_metric_an_alert_reads_is_exported() -> None:
    source = "".join(path.read_text() for path in EXPORTERS)
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for rule in rules()
        for name in re.findall(r"maskline_[a-z_]+", rule["expr"])
    }
    http = {name for name in used if name.startswith("maskline_http_")}
    assert used - http and not [name for name in used - http if f'"{name}"' not in source]
    assert 'prefix="maskline_http"' in source and http <= {"maskline_http_requests"}
