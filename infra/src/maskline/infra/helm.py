"""The Helm chart's view of the system table (`infra/helm/maskline/files/system.yaml`): every
service, the durable consumers it runs (KEDA scales each worker on their lag), the object-store
identity it uses. Generated, never edited: `python -m maskline.infra.helm` writes it, `--check`
fails when it is stale (`just lint`, tests/infra/test_helm.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from maskline.contracts import subjects as table
from maskline.infra.generated import write_or_check

CHART = Path(__file__).resolve().parents[3] / "helm" / "maskline"
SYSTEM_FILE = CHART / "files" / "system.yaml"
HEADER = "# Generated from the system table (contracts/subjects.py) by `python -m maskline.infra.helm`; do not edit.\n"


def system() -> dict[str, Any]:
    services: dict[str, Any] = {}
    for service in table.SERVICES:
        consumers = [{"stream": stream, "durable": durable} for stream, durable, _ in table.durables_of(service)]
        services[service] = {"consumers": consumers}
    return {"services": services}


def render() -> str:
    return HEADER + str(yaml.safe_dump(system(), sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    return write_or_check(SYSTEM_FILE, render(), argv, "python -m maskline.infra.helm")


if __name__ == "__main__":
    raise SystemExit(main())
