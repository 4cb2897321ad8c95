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

from maskline.contracts import draft07

#: Keys of a property's schema that do not change what is valid on the wire (a reference's rule is
#: what consumers check of the named object, not of the message).
_WORDING = {"description", "title", "examples", "x-maskline-reference"}


def _field(schema: dict[str, Any]) -> dict[str, Any]:
    field: dict[str, Any] = _annotations_dropped({k: v for k, v in schema.items() if k not in _WORDING})
    return field


def _annotations_dropped(value: Any) -> Any:
    """`value` without reference rules at any depth (inside `anyOf`, `items`, `additionalProperties`);
    a lone `allOf: [x]` is `x` (draft-07 annotates a `$ref` so, where 2020-12 wrote beside it)."""
    if isinstance(value, dict):
        kept = {k: _annotations_dropped(v) for k, v in value.items() if k != "x-maskline-reference"}
        return kept["allOf"][0] if list(kept) == ["allOf"] and len(kept["allOf"]) == 1 else kept
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
        old_defs, new_defs = _in_draft07(old_doc).get("definitions", {}), _in_draft07(new_doc).get("definitions", {})
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


def _in_draft07(doc: dict[str, Any]) -> dict[str, Any]:
    """Releases before 1.8 were kept as msgspec wrote them (2020-12): compared in one dialect, a
    tuple's `prefixItems` and its draft-07 `items` list are the same field."""
    return doc if doc.get("$schema") == draft07.DIALECT else draft07.translate(doc)


def load(folder: Path) -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def newest_release(releases: Path) -> Path:
    """The folder of the highest released `major.minor`."""
    folders = [p for p in releases.iterdir() if p.is_dir()]
    return max(folders, key=lambda p: tuple(int(part) for part in p.name.split(".")))
