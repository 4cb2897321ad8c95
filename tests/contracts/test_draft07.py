"""The published schemas are draft-07, say so, and accept what the services send: checked with
`jsonschema`'s draft-07 validator, which shares nothing with msgspec (which wrote the schemas)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import msgspec
import pytest

from maskline.contracts import draft07, examples, model_v1, schema
from maskline.contracts.envelope import Envelope

pytestmark = pytest.mark.unit

#: Keywords of 2019-09 / 2020-12 that draft-07 does not know (it would ignore them, silently).
LATER_KEYWORDS = {
    "$defs",
    "$anchor",
    "$dynamicAnchor",
    "$dynamicRef",
    "$recursiveRef",
    "$vocabulary",
    "dependentRequired",
    "dependentSchemas",
    "maxContains",
    "minContains",
    "prefixItems",
    "unevaluatedItems",
    "unevaluatedProperties",
}


def published() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(schema.SCHEMA_DIR.glob("*.json"))}


def keywords(node: Any) -> set[str]:
    """Every keyword used anywhere in a schema (property names excepted)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "definitions", "patternProperties"):
                for sub in value.values():
                    found |= keywords(sub)
            elif key not in ("default", "enum", "const", "examples") and not key.startswith("x-"):
                found.add(key)
                found |= keywords(value)
    elif isinstance(node, list):
        for item in node:
            found |= keywords(item)
    return found


def refs_with_siblings(node: Any) -> list[Any]:
    if isinstance(node, dict):
        here = [node] if "$ref" in node and len(node) > 1 else []
        return here + [hit for value in node.values() for hit in refs_with_siblings(value)]
    if isinstance(node, list):
        return [hit for item in node for hit in refs_with_siblings(item)]
    return []


def test_every_published_schema_names_draft_07_and_is_one() -> None:
    docs = published()
    assert len(docs) == len(schema.catalog()) == 44
    for name, doc in docs.items():
        assert doc["$schema"] == draft07.DIALECT == "http://json-schema.org/draft-07/schema#", name
        assert jsonschema.validators.validator_for(doc) is jsonschema.Draft7Validator, name
        jsonschema.Draft7Validator.check_schema(doc)
        assert not keywords(doc) & LATER_KEYWORDS, name
        assert refs_with_siblings(doc) == [], f"{name}: draft-07 ignores what stands beside a $ref"


def test_every_message_of_the_asyncapi_document_has_an_example_that_its_schema_accepts() -> None:
    doc = json.loads(schema.ASYNCAPI.read_text())
    messages = doc["components"]["messages"]
    assert set(messages) == set(schema.catalog())
    for name, message in messages.items():
        assert message["payload"]["schemaFormat"] == draft07.SCHEMA_FORMAT == "application/schema+json;version=draft-07"
        payload_schema = json.loads((schema.ASYNCAPI.parent / message["payload"]["schema"]["$ref"]).read_text())
        jsonschema.Draft7Validator.check_schema(message["headers"])
        assert message["examples"], name
        for example in message["examples"]:
            jsonschema.Draft7Validator(payload_schema).validate(example["payload"])
            jsonschema.Draft7Validator(message["headers"]).validate(example["headers"])
            # a real message: the consumers' own decoder reads it back to what the example was made from
            decoded = msgspec.json.decode(json.dumps(example["payload"]), type=schema.catalog()[name])
            assert json.loads(msgspec.json.encode(decoded)) == example["payload"]


def test_a_valid_register_requested_fails_as_msgspec_wrote_its_schema_and_passes_as_published() -> None:
    message = examples.message(model_v1.REGISTER_REQUESTED)
    as_written = msgspec.json.schema(Envelope[model_v1.RegisterRequested])  # 2020-12
    errors = list(jsonschema.Draft7Validator(as_written).iter_errors(message))
    # read as draft-07, `prefixItems` is unknown and `items: false` refuses every item of every tuple
    assert {e.json_path for e in errors} == {"$.data.input_size", "$.data.preprocessing.mean", "$.data.preprocessing.std"}
    assert len(errors) == 8
    assert list(jsonschema.Draft202012Validator(as_written).iter_errors(message)) == []
    assert list(jsonschema.Draft7Validator(published()[model_v1.REGISTER_REQUESTED]).iter_errors(message)) == []


@pytest.mark.parametrize(
    ("where", "value", "why"),
    [
        (("data", "input_size"), ["256", 256], "is not of type 'integer'"),
        (("data", "input_size"), [256, 256, 3], "Additional items are not allowed"),
        (("data", "input_size"), [4, 256], "less than the minimum of 8"),
        (("data", "preprocessing", "std"), [0.229, 0.0, 0.225], "less than or equal to the minimum of 0"),
        (("data", "labels"), ["background"], "is too short"),
        (("data", "weights", "sha256"), "not-a-hash", "does not match"),
        (("tenant",), "two.tokens", "does not match"),
        (("data", "name"), None, "'name' is a required property"),
    ],
)
def test_an_invalid_register_requested_is_refused(where: tuple[str, ...], value: Any, why: str) -> None:
    message = copy.deepcopy(examples.message(model_v1.REGISTER_REQUESTED))
    *path, last = where
    parent = message
    for key in path:
        parent = parent[key]
    if value is None:
        del parent[last]
    else:
        parent[last] = value
    errors = list(jsonschema.Draft7Validator(published()[model_v1.REGISTER_REQUESTED]).iter_errors(message))
    assert any(why in e.message for e in errors), [e.message for e in errors]


def test_a_keyword_without_a_translation_stops_the_generation() -> None:
    with pytest.raises(ValueError, match="unevaluatedProperties"):
        draft07.translate({"type": "object", "unevaluatedProperties": False})
    with pytest.raises(ValueError, match="points where"):
        draft07.translate({"$ref": "#/components/schemas/X"})


def test_the_translation_keeps_what_2020_12_meant() -> None:
    tuple_schema = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False}
    assert draft07.translate(tuple_schema) == {
        "$schema": draft07.DIALECT,
        "type": "array",
        "items": [{"type": "integer"}, {"type": "string"}],
        "additionalItems": False,
    }
    annotated = {"$ref": "#/$defs/A", "default": {}, "x-note": 1, "$defs": {"A": {"type": "object"}}}
    assert draft07.translate(annotated) == {
        "$schema": draft07.DIALECT,
        "allOf": [{"$ref": "#/definitions/A"}],
        "default": {},
        "x-note": 1,
        "definitions": {"A": {"type": "object"}},
    }
