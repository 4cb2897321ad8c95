"""JSON Schema draft-07: the dialect every published schema is written in, and says it is in.

msgspec writes JSON Schema 2020-12 (`$defs`, `prefixItems` for tuples, keywords beside `$ref`).
The published schemas are read by AsyncAPI tools and by whatever validator a partner picks, so they
are translated here into draft-07:

- AsyncAPI 3.0's own Schema Object is a superset of draft-07, and of the Multi Format Schema
  Object's formats the spec requires every tool to read only AsyncAPI's own and
  `application/schema+json;version=draft-07`; 2020-12 is not among them (`@asyncapi/parser` 3.6.6
  checks a draft-07 payload schema, and passes a broken one labelled 2020-12 without a word).
- Read as draft-07, msgspec's 2020-12 output is wrong, not merely older: `prefixItems` is unknown
  there, so `items: false` refuses every item of a tuple (a valid `model.v1.register.requested` failed with 8
  errors), and keywords beside a `$ref` are ignored.

Each keyword is translated by what it means, and one this module does not know stops the
generation rather than pass through with another meaning.
"""

from __future__ import annotations

from typing import Any

DIALECT = "http://json-schema.org/draft-07/schema#"
"""The `$schema` of every published schema."""
SCHEMA_FORMAT = "application/schema+json;version=draft-07"
"""The AsyncAPI Multi Format Schema Object's name of the dialect (`schemaFormat`)."""

_DEFS_2020, _DEFS_07 = "#/$defs/", "#/definitions/"

#: Keywords that mean the same in both dialects and whose values are not schemas.
_SAME = frozenset(
    {
        "$comment",
        "$id",
        "const",
        "contentEncoding",
        "contentMediaType",
        "default",
        "description",
        "enum",
        "examples",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "format",
        "maxItems",
        "maxLength",
        "maxProperties",
        "maximum",
        "minItems",
        "minLength",
        "minProperties",
        "minimum",
        "multipleOf",
        "pattern",
        "readOnly",
        "required",
        "title",
        "type",
        "uniqueItems",
        "writeOnly",
    }
)
#: Keywords whose value is one schema, in both dialects (`items` only without `prefixItems`).
_ONE = frozenset({"additionalProperties", "else", "if", "items", "not", "propertyNames", "then"})
#: Keywords whose value is a list of schemas, in both dialects.
_LIST = frozenset({"allOf", "anyOf", "oneOf"})
#: Keywords whose value maps names to schemas (`$defs` becomes draft-07's `definitions`).
_MAP = {"properties": "properties", "patternProperties": "patternProperties", "$defs": "definitions"}


def translate(schema: dict[str, Any]) -> dict[str, Any]:
    """A draft-07 document that accepts exactly what the 2020-12 `schema` (msgspec's) accepts."""
    return {"$schema": DIALECT, **_schema(schema)}


def _schema(node: Any) -> Any:
    if isinstance(node, bool):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key in _SAME:
            out[key] = value
        elif key in _ONE and not (key == "items" and "prefixItems" in node):
            out[key] = _schema(value)
        elif key in _LIST:
            out[key] = [_schema(v) for v in value]
        elif key in _MAP:
            out[_MAP[key]] = {name: _schema(v) for name, v in value.items()}
        elif key == "prefixItems":  # 2020-12 tuples: draft-07 says it with an array `items`
            out["items"] = [_schema(v) for v in value]
            if "items" in node:
                out["additionalItems"] = _schema(node["items"])
        elif key == "$ref":
            out[key] = _ref(value)
        elif key != "items":
            raise ValueError(f"JSON Schema keyword {key!r} has no draft-07 translation here (maskline.contracts.draft07)")
    if "$ref" in out and len(out) > 1:
        # draft-07 ignores every keyword beside a `$ref` (its `default`, our `x-maskline-reference`)
        out["allOf"] = [{"$ref": out.pop("$ref")}, *out.get("allOf", [])]
    return out


def _ref(ref: str) -> str:
    if ref.startswith(_DEFS_2020):
        return _DEFS_07 + ref.removeprefix(_DEFS_2020)
    if ref.startswith("#/") and not ref.startswith(_DEFS_07):
        raise ValueError(f"$ref {ref!r} points where the draft-07 translation does not know")
    return ref
