"""Contracts evolve by minors that old consumers still read: unknown fields are skipped everywhere on
the bus, and the published schemas are compared with the last released ones."""

from __future__ import annotations

import copy
import typing
from typing import Any

import msgspec
import pytest

from maskline.contracts import compat, schema
from maskline.contracts import subjects as table

pytestmark = pytest.mark.unit


def structs_in(kind: Any, seen: set[type]) -> None:
    """Every Struct type reachable from `kind` (fields, containers, unions)."""
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        if kind in seen:
            return
        seen.add(kind)
        for hint in typing.get_type_hints(kind, include_extras=True).values():
            structs_in(hint, seen)
        return
    for arg in typing.get_args(kind):
        structs_in(arg, seen)


def test_every_struct_on_the_bus_skips_unknown_fields() -> None:
    seen: set[type] = set()
    for subject in table.SUBJECTS:
        structs_in(subject.payload, seen)
    assert len(seen) > 20
    strict = sorted(kind.__name__ for kind in seen if kind.__struct_config__.forbid_unknown_fields)
    assert not strict, f"these would dead-letter a newer minor at older consumers: {strict}"


def test_the_published_schemas_are_a_compatible_minor_of_the_last_release() -> None:
    release = compat.newest_release(schema.RELEASED)
    assert compat.breaking_changes(compat.load(release), compat.load(schema.SCHEMA_DIR)) == []


def test_the_diff_names_every_kind_of_break() -> None:
    released = compat.load(compat.newest_release(schema.RELEASED))
    doc = copy.deepcopy(released["seg.v1.requested.json"])
    options = doc["$defs"]["SegmentationOptions"]
    name = next(iter(options["properties"]))
    del options["properties"][name]
    options["additionalProperties"] = False
    options.setdefault("required", []).append("tta")
    doc["$defs"]["ObjectRef"]["properties"]["size"] = {"type": "string"}
    changed = {**released, "seg.v1.requested.json": doc}
    del changed["seg.v1.failed.json"]
    problems = "\n".join(compat.breaking_changes(released, changed))
    assert "seg.v1.failed.json: schema removed" in problems
    assert f"SegmentationOptions.{name} removed" in problems
    assert "SegmentationOptions now refuses unknown fields" in problems
    assert "SegmentationOptions.tta is now required" in problems
    assert "ObjectRef.size changed" in problems
    # adding an optional field is a compatible minor
    added = copy.deepcopy(released["seg.v1.requested.json"])
    added["$defs"]["SegmentationOptions"]["properties"]["new_option"] = {"type": "boolean", "default": False}
    assert compat.breaking_changes(released, {**released, "seg.v1.requested.json": added}) == []


def test_a_default_object_may_gain_the_defaults_of_added_fields_but_not_change_old_ones() -> None:
    released = compat.load(compat.newest_release(schema.RELEASED))
    doc = copy.deepcopy(released["seg.v1.requested.json"])
    options = doc["$defs"]["SegmentationRequested"]["properties"]["options"]
    options["default"] = {**options["default"], "alias": None}
    assert compat.breaking_changes(released, {**released, "seg.v1.requested.json": doc}) == []
    options["default"] = {**options["default"], "model": "another-model"}
    problems = compat.breaking_changes(released, {**released, "seg.v1.requested.json": doc})
    assert problems and "SegmentationRequested.options changed" in problems[0]
