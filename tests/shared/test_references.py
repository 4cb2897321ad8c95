"""Every object reference of every bus payload is found and checked by the runtime, by the rule its
contract field declares; a contract that names stored bytes without a rule cannot be consumed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import msgspec
import msgspec.inspect as mi
import pytest

from maskline.contracts import model_v1, seg_v1
from maskline.contracts import subjects as table
from maskline.contracts.common_v1 import ModelRef, ObjectRef, reference
from maskline.shared import references
from maskline.shared.storage.filesystem import FilesystemStore

pytestmark = pytest.mark.unit


def _str_fields(t: mi.Type, seen: set[type]) -> list[tuple[str, mi.Type]]:
    """(struct.field, type) of every string field, with the metadata that wraps it, in a payload."""
    found: list[tuple[str, mi.Type]] = []
    inner = t.type if isinstance(t, mi.Metadata) else t
    if isinstance(inner, mi.StructType) and inner.cls not in seen:
        seen.add(inner.cls)
        for f in inner.fields:
            ft = f.type.types[0] if isinstance(f.type, mi.UnionType) else f.type
            base = ft.type if isinstance(ft, mi.Metadata) else ft
            if isinstance(base, mi.StrType):
                found.append((f"{inner.cls.__name__}.{f.name}", ft))
            found += _str_fields(ft, seen)
    for attr in ("item_type", "value_type"):
        if hasattr(inner, attr):
            found += _str_fields(getattr(inner, attr), seen)
    if isinstance(inner, mi.UnionType):
        for member in inner.types:
            found += _str_fields(member, seen)
    return found


def test_every_payload_in_the_subject_table_has_a_rule_for_every_reference() -> None:
    for s in table.SUBJECTS:
        references.plan_for(s.payload)  # raises UncheckedReference for an ObjectRef without a rule
        for name, t in _str_fields(mi.type_info(s.payload), set()):
            field = name.split(".")[1]
            if field in ("dataset", "evaluate_on") or field.endswith("_dataset"):  # a dataset named by a string
                assert isinstance(t, mi.Metadata) and references.Rule.of(t.extra), f"{s.type}: {name} has no reference rule"


def test_what_a_publisher_may_publish_carries_no_reference_the_platform_claims_to_have_written() -> None:
    for s in table.SUBJECTS:
        if not s.external_publish:
            continue
        sample = _every_reference_rule(s.payload)
        assert all(rule.written_by == "publisher" for rule in sample), s.type


def _every_reference_rule(payload: type) -> list[references.Rule]:
    rules: list[references.Rule] = []

    def walk(t: mi.Type, seen: set[type]) -> None:
        if isinstance(t, mi.Metadata):
            rule = references.Rule.of(t.extra)
            if rule is not None:
                rules.append(rule)
                return
            walk(t.type, seen)
        elif isinstance(t, mi.StructType) and t.cls not in seen:
            seen.add(t.cls)
            for f in t.fields:
                walk(f.type, seen)
        elif isinstance(t, mi.UnionType):
            for member in t.types:
                walk(member, seen)
        else:
            for attr in ("item_type", "value_type"):
                if hasattr(t, attr):
                    walk(getattr(t, attr), seen)

    walk(mi.type_info(payload), set())
    return rules


class Deep(msgspec.Struct, frozen=True):
    refs: dict[str, tuple[ObjectRef, ...]]


class Payload(msgspec.Struct, frozen=True):
    checked: Annotated[ObjectRef, reference("inputs", by="publisher")]
    nested: Deep | None = None


def test_a_new_contract_with_an_unchecked_reference_is_refused_wherever_the_reference_sits() -> None:
    with pytest.raises(references.UncheckedReference, match=r"Deep\.refs"):
        references.plan_for(Payload)


def ref(key: str, data: bytes) -> ObjectRef:
    return ObjectRef(key=key, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_references_are_found_in_dicts_optionals_and_nested_structs() -> None:
    out = ref("outputs/t1/j/mask.png", b"m")
    done = seg_v1.SegmentationCompleted(
        artifacts={"mask": out, "regions": out}, model=ModelRef(name="m", version=1), width=1, height=1, regions=0
    )
    assert [f.path for f in references.references(seg_v1.SegmentationCompleted, done)] == [
        "data.artifacts[mask]",
        "data.artifacts[regions]",
    ]
    opened = model_v1.RoundOpened(
        round=1, rounds=1, model=model_v1.VersionRef("m", 1), name="m", sites=("a",), quorum=1, evaluate_on="datasets/t1/h/"
    )
    assert [(f.path, f.value) for f in references.references(model_v1.RoundOpened, opened)] == [
        ("data.evaluate_on", "datasets/t1/h/")
    ]


@pytest.fixture
def store(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "objects")


async def test_a_publisher_reference_is_checked_by_owner_area_size_and_hash_and_read_once(store: FilesystemStore) -> None:
    image = await store.put("inputs/t1/uploads/a", b"image-bytes")
    theirs = await store.put("inputs/t2/uploads/a", b"their-bytes")
    weights = await store.put("models/t2/m/1/model.pt", b"their-weights")
    public = await store.put("models/maskline/m/1/model.pt", b"public-weights")

    def requested(image_ref: ObjectRef) -> seg_v1.SegmentationRequested:
        return seg_v1.SegmentationRequested(image=image_ref)

    async def check(payload: type, data: object) -> dict[tuple[str, str], bytes]:
        return await references.check_message(store, payload, data, "t1")

    verified = await check(seg_v1.SegmentationRequested, requested(image))
    assert verified == {(image.key, image.sha256): b"image-bytes"}
    with references.checked(verified):
        await store.delete(image.key)  # read from what the runtime checked, not again from the store
        assert await references.read(store, image, "t1") == b"image-bytes"

    refusals = {
        "foreign_reference": requested(theirs),
        "invalid_reference": requested(ref("outputs/t1/j/mask.png", b"x")),  # the contract says inputs/
        "input_missing": requested(ref("inputs/t1/uploads/gone", b"x")),
        "reference_mismatch": requested(msgspec.structs.replace(theirs, key="inputs/t1/uploads/b")),
    }
    await store.put("inputs/t1/uploads/b", b"other-bytes")
    for code, message in refusals.items():
        with pytest.raises(references.PermanentError) as err:
            await check(seg_v1.SegmentationRequested, message)
        assert err.value.code == code, (code, err.value.reason)

    def opened(weights_ref: ObjectRef) -> model_v1.RoundOpened:
        return model_v1.RoundOpened(
            round=1, rounds=1, model=model_v1.VersionRef("m", 1), name="m", sites=("a",), quorum=1, weights=weights_ref
        )

    with pytest.raises(references.ForeignReference):  # a forged round naming another tenant's weights
        await check(model_v1.RoundOpened, opened(weights))
    assert await check(model_v1.RoundOpened, opened(public))  # the platform's public models are everyone's
    with pytest.raises(references.ForeignReference):  # a dataset of another tenant
        theirs_dataset = model_v1.EvaluateRequested(model=model_v1.VersionRef("m", 1), dataset="datasets/t2/x/")
        await check(model_v1.EvaluateRequested, theirs_dataset)
