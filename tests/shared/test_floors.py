"""The runtime's floors, read off its imports: the core at the bottom (bus, storage, keys, config,
references...), the domains above it side by side (jobs, models, images, tenants, operations), the
service runtime on top (consumer, runtime). A module imports only what lies below it, or beside it
in its own package; domains do not import each other; nothing imports a service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2] / "shared" / "src" / "maskline" / "shared"
DOMAINS = ("jobs", "models", "images", "tenants", "operations")
TOP = ("service",)


def place(module: str) -> tuple[int, str]:
    """(floor, package) of a `maskline.shared...` module: 0 core, 1 a domain, 2 the service runtime."""
    parts = module.split(".")[2:]
    head = parts[0] if parts else ""
    if head in TOP:
        return 2, head
    if head in DOMAINS:
        return 1, head
    return 0, "core"


def imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]  # `from maskline.shared import jobs`
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


def modules() -> list[tuple[str, Path]]:
    return [("maskline.shared." + ".".join(p.relative_to(ROOT).with_suffix("").parts), p) for p in sorted(ROOT.rglob("*.py"))]


def known(name: str, names: set[str]) -> bool:
    return name in names or name + ".__init__" in names


def test_every_import_runs_down_a_floor_or_stays_in_its_package() -> None:
    names = {name for name, _ in modules()}
    wrong = []
    for name, path in modules():
        floor, package = place(name)
        for target in imports(path):
            if target.startswith("maskline.services"):
                wrong.append(f"{name} imports a service: {target}")
                continue
            if not target.startswith("maskline.shared.") or not known(target, names):
                continue
            their_floor, their_package = place(target)
            if their_package == package:
                continue
            if their_floor >= floor:
                wrong.append(f"{name} (floor {floor}, {package}) imports {target} (floor {their_floor}, {their_package})")
    assert wrong == [], "\n".join(wrong)


def test_the_floors_hold_what_they_say() -> None:
    """Every domain and the service runtime exist, and the core keeps the bus and the consumer's needs."""
    for package in (*DOMAINS, *TOP):
        assert (ROOT / package / "__init__.py").exists(), package
    for core in ("bus", "kv", "config", "keys", "references", "errors", "provision"):
        assert (ROOT / f"{core}.py").exists(), core
