"""Is a new set of published schemas a compatible minor of a released one?

A minor may add optional fields and new schemas; it may not remove a schema, a struct or a field,
change a field's schema, make a field required, or start refusing unknown fields (old consumers
must keep reading newer messages, and newer consumers older ones). Released schemas are kept in
`contracts/released/<major.minor>/`; a test compares the current ones with the newest of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Keys of a property's schema that do not change what is valid on the wire (a reference's rule is
#: what consumers check of the named object, not of the message).
_WORDING = {"description", "title", "examples", "x-maskline-reference"}


def _field(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: _annotations_dropped(v) for k, v in schema.items() if k not in _WORDING}


def _annotations_dropped(value: Any) -> Any:
    """`value` without reference rules at any depth (inside `anyOf`, `items`, `additionalProperties`)."""
    if isinstance(value, dict):
        return {k: _annotations_dropped(v) for k, v in value.items() if k != "x-maskline-reference"}
    if isinstance(value, list):
        return [_annotations_dropped(v) for v in value]
    return value


def _same_field(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal but for wording, or for a default object that only gained keys (fields added since,
    with their own defaults): what an old producer leaves out still decodes to the same values."""
    a, b = _field(old), _field(new)
    if a == b:
        return True
    old_default, new_default = a.pop("default", None), b.pop("default", None)
    if a != b or not isinstance(old_default, dict) or not isinstance(new_default, dict):
        return False
    return all(key in new_default and new_default[key] == value for key, value in old_default.items())


def breaking_changes(released: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> list[str]:
    """Every incompatibility between two sets of schemas (file name → JSON Schema document)."""
    problems: list[str] = []
    for name, old_doc in sorted(released.items()):
        new_doc = current.get(name)
        if new_doc is None:
            problems.append(f"{name}: schema removed")
            continue
        old_defs, new_defs = old_doc.get("$defs", {}), new_doc.get("$defs", {})
        for struct, old in sorted(old_defs.items()):
            new = new_defs.get(struct)
            if new is None:
                problems.append(f"{name}: {struct} removed")
                continue
            where = f"{name}: {struct}"
            if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
                problems.append(f"{where} now refuses unknown fields")
            for field, schema in old.get("properties", {}).items():
                now = new.get("properties", {}).get(field)
                if now is None:
                    problems.append(f"{where}.{field} removed")
                elif struct.startswith("Envelope") and field == "version":
                    continue  # the envelope's default version is the contract version: it moves with every minor
                elif not _same_field(schema, now):
                    problems.append(f"{where}.{field} changed: {_field(schema)} -> {_field(now)}")
            for field in sorted(set(new.get("required", [])) - set(old.get("required", []))):
                problems.append(f"{where}.{field} is now required")
    return problems


def load(folder: Path) -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def newest_release(releases: Path) -> Path:
    """The folder of the highest released `major.minor`."""
    folders = [p for p in releases.iterdir() if p.is_dir()]
    return max(folders, key=lambda p: tuple(int(part) for part in p.name.split(".")))
