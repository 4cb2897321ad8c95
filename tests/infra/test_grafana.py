"""The Grafana dashboard: every panel's query is valid PromQL (promtool checks it as a recording
rule) and names only metrics the services export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "infra" / "grafana" / "maskline.json"
EXPORTERS = [
    ROOT / "services" / "gateway" / "src" / "maskline" / "services" / "gateway" / "operations" / "metrics.py",
    ROOT / "shared" / "src" / "maskline" / "shared" / "operations" / "metrics.py",
]


def queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: ./dev test installs Debian's prometheus package"
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"maskline:panel_{i}", "expr": q} for i, q in enumerate(queries())]}
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_maskline_metric_on_the_dashboard_is_exported() -> None:
    source = "".join(path.read_text() for path in EXPORTERS)
    used = {re.sub(r"_(total|bucket|sum|count)$", "", name) for q in queries() for name in re.findall(r"maskline_[a-z_]+", q)}
    http = {name for name in used if name.startswith("maskline_http_")}
    assert not [name for name in used - http if f'"{name}"' not in source]
    assert 'prefix="maskline_http"' in source and http <= {"maskline_http_requests", "maskline_http_request_duration_seconds"}
