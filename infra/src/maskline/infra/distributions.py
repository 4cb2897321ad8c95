"""maskline's distributions as installed: what each requires, and where its files are.

A deployable is a distribution with everything it requires at run time (markers evaluated, extras
followed). `closure` walks that through `importlib.metadata`, so a test can check that a service
imports nothing outside it, and a benchmark can add up what an image of it would install.
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SERVICE_PREFIX = "maskline-"


def closure(requirement: str) -> dict[str, metadata.Distribution]:
    """Every distribution `requirement` (a name, extras allowed) needs at run time, itself included."""
    root = Requirement(requirement)
    found: dict[str, metadata.Distribution] = {}
    pending = [(root.name, frozenset(root.extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        dist = metadata.distribution(name)
        found[canonicalize_name(name)] = dist
        environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
        for line in dist.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate(env) for env in environments):
                pending.append((needed.name, frozenset(needed.extras)))
    return found


def installed_bytes(dist: metadata.Distribution) -> int:
    """The size of the files a distribution installed (its RECORD)."""
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


@cache
def maskline_distributions() -> list[str]:
    names = {canonicalize_name(dist.metadata["Name"]) for dist in metadata.distributions()}
    return sorted(name for name in names if name == "maskline" or name.startswith(SERVICE_PREFIX))


def owner(module: str, path: str | None) -> str | None:
    """The distribution a loaded module came from; None for the standard library and built-ins."""
    top = module.split(".", 1)[0]
    if top in sys.stdlib_module_names or path is None:
        return None
    if top == "maskline":
        # a namespace package: each distribution installs one portion, found by the file's folder
        for name in maskline_distributions():
            if any(Path(path).is_relative_to(root) for root in _source_roots(name)):
                return name
        return "unknown maskline portion"
    owners = _top_level_owners().get(top) or _owners_by_folder(Path(path))
    if len(owners) > 1:  # a namespace several distributions install into (`opentelemetry`): whose file?
        owners = [o for o in owners if Path(path).resolve() in _files_of(o)] or owners
    return canonicalize_name(owners[0]) if owners else f"unknown ({top})"


@cache
def _files_of(name: str) -> frozenset[Path]:
    dist = metadata.distribution(name)
    return frozenset(Path(str(dist.locate_file(f))).resolve() for f in dist.files or [])


def _owners_by_folder(path: Path) -> list[str]:
    """A module loaded under a top-level name of its own from inside another package's folder
    (ONNX Runtime's quantizer puts `onnxruntime/transformers` on sys.path and imports `float16`):
    the distribution of the package whose folder holds the file."""
    for entry in map(Path, sys.path):
        if entry.name == "site-packages" and path.is_relative_to(entry):
            return _top_level_owners().get(path.relative_to(entry).parts[0], [])
    return []


@cache
def _source_roots(name: str) -> list[Path]:
    """Where a distribution's `maskline` portion lives: its src/ (editable) or site-packages files."""
    dist = metadata.distribution(name)
    roots: list[Path] = []
    for file in dist.files or []:
        located = Path(str(dist.locate_file(file)))
        if located.suffix == ".pth" and located.is_file():
            roots += [Path(line) for line in located.read_text().splitlines() if line and not line.startswith("import")]
        elif file.parts and file.parts[0] == "maskline":
            roots.append(located)
    return roots


@cache
def _top_level_owners() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())
