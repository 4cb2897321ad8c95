"""Claim check: every object an event names is checked before any handler runs, by the rule its
contract field declares (`maskline.contracts.common_v1.reference`).

An event is a claim about bytes in storage. The consumer runtime walks the payload of every
message (wherever a reference sits: nested structs, optionals, tuples, dict values) and checks
each reference against the subject's tenant and the field's areas; a reference the publisher
chose is also read and checked against its size and sha256, and the checked bytes are what the
handler then reads (`read`), so nothing is read twice. A key outside the tenant, a key no service
would write, or bytes that differ from the reference are permanent failures with a reason, never a
retried `transient`. Handlers therefore cannot forget the check: a new contract field that names
stored bytes gets it by being annotated, and a payload with an unannotated reference does not
start its consumer (`plan_for`) nor pass the test that walks the subject table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

import msgspec.inspect as mi

from maskline.contracts.common_v1 import REFERENCE, ObjectRef
from maskline.contracts.subjects import PLATFORM_TENANT
from maskline.shared import keys
from maskline.shared.errors import PermanentError
from maskline.shared.storage import ObjectNotFound, ObjectStore

#: Hash in a worker thread above this size, so a 20 MB image does not stall the event loop.
_THREAD_HASH_BYTES = 1 << 20


class ForeignReference(PermanentError):
    """The key lies outside the tenant of the event that names it."""

    code = "foreign_reference"


class InvalidReference(PermanentError):
    """The key cannot name an object of this platform (wrong area, `..`, empty segments)."""

    code = "invalid_reference"


class ReferenceMismatch(PermanentError):
    """The stored bytes differ from the reference's size or sha256."""

    code = "reference_mismatch"


class InputMissing(PermanentError):
    """Nothing is stored under the key."""

    code = "input_missing"


class UncheckedReference(TypeError):
    """A contract names stored bytes in a field without a reference rule: its consumer must not start."""


@dataclass(frozen=True)
class Rule:
    areas: tuple[str, ...]
    written_by: Literal["publisher", "platform"]
    public: bool = False
    """The platform's public objects (owner `maskline`) are accepted too."""

    @classmethod
    def of(cls, extra: dict[str, Any] | None) -> Rule | None:
        raw = (extra or {}).get(REFERENCE)
        if raw is None:
            return None
        return cls(tuple(raw["areas"]), raw["written_by"], bool(raw.get("public", False)))


@dataclass(frozen=True)
class Found:
    """One reference in a payload: where it sits, its rule, and its value (an ObjectRef or a prefix)."""

    path: str
    rule: Rule
    value: ObjectRef | str


Finder = Callable[[Any, str], Iterator[Found]]


def _nothing(value: Any, path: str) -> Iterator[Found]:
    return iter(())


def _compile(t: mi.Type, where: str, structs: dict[type, Finder]) -> Finder:
    """A function that yields every reference in a value of type `t` (`where` names it in errors)."""
    if isinstance(t, mi.Metadata):
        rule = Rule.of(t.extra)
        if rule is None:
            return _compile(t.type, where, structs)

        def found(value: Any, path: str) -> Iterator[Found]:
            if value is not None:
                yield Found(path, rule, value)

        return found
    if isinstance(t, mi.StructType):
        if t.cls is ObjectRef:
            raise UncheckedReference(f"{where} names stored bytes (ObjectRef) without a reference rule (common_v1.reference)")
        if t.cls in structs:  # recursive types: the finder being built
            return lambda value, path: structs[t.cls](value, path)
        structs[t.cls] = _nothing
        fields = [(f.name, _compile(f.type, f"{t.cls.__name__}.{f.name}", structs)) for f in t.fields]
        fields = [(name, finder) for name, finder in fields if finder is not _nothing]
        if not fields:
            return _nothing

        def in_struct(value: Any, path: str) -> Iterator[Found]:
            for name, finder in fields:
                yield from finder(getattr(value, name), f"{path}.{name}")

        structs[t.cls] = in_struct
        return in_struct
    if isinstance(t, mi.UnionType):
        members = [m for m in (_compile(m, where, structs) for m in t.types) if m is not _nothing]
        if len(members) > 1:  # the contracts' unions are optionals: one member that may hold references
            raise UncheckedReference(f"{where}: a union of several types that hold references cannot be checked")
        if not members:
            return _nothing
        only = members[0]
        return lambda value, path: only(value, path) if value is not None else iter(())
    if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        item = _compile(t.item_type, where, structs)
        if item is _nothing:
            return _nothing
        return lambda value, path: (f for i, v in enumerate(value) for f in item(v, f"{path}[{i}]"))
    if isinstance(t, mi.TupleType):
        items = [_compile(i, where, structs) for i in t.item_types]
        if all(i is _nothing for i in items):
            return _nothing
        return lambda value, path: (
            f for i, (v, finder) in enumerate(zip(value, items, strict=False)) for f in finder(v, f"{path}[{i}]")
        )
    if isinstance(t, mi.DictType):
        values = _compile(t.value_type, where, structs)
        if values is _nothing:
            return _nothing
        return lambda value, path: (f for k, v in value.items() for f in values(v, f"{path}[{k}]"))
    return _nothing


_plans: dict[Any, Finder] = {}


def plan_for(payload: Any) -> Finder:
    """The reference finder of a payload type (compiled once). Raises UncheckedReference when the
    type names stored bytes anywhere without a rule."""
    if payload not in _plans:
        _plans[payload] = _compile(mi.type_info(payload), getattr(payload, "__name__", str(payload)), {})
    return _plans[payload]


def references(payload: Any, value: Any) -> list[Found]:
    """Every reference in `value`, a decoded `payload`, with the path to it (`data.image`)."""
    return list(plan_for(payload)(value, "data"))


#: The bytes of the publisher-chosen references the runtime checked for the message being handled,
#: by (key, sha256): `read` returns them instead of reading the store again.
_checked: ContextVar[dict[tuple[str, str], bytes] | None] = ContextVar("checked_references", default=None)


def check_owner(ref: ObjectRef, tenant: str, rule: Rule | None = None, path: str = "") -> None:
    """Raise unless `ref.key` is well formed, in the rule's areas, and `tenant`'s (or public, where the rule allows)."""
    try:
        owner = keys.tenant_of(ref.key)
    except keys.InvalidKey as exc:
        raise InvalidReference(f"{path + ': ' if path else ''}{exc}") from exc
    area = ref.key.split("/", 1)[0]
    if rule is not None and area not in rule.areas:
        raise InvalidReference(f"{path}: object {ref.key} is not in {' or '.join(rule.areas)}/ as the contract requires")
    if owner != tenant and not (rule is not None and rule.public and owner == PLATFORM_TENANT):
        where = f"{path}: " if path else ""
        raise ForeignReference(f"{where}object {ref.key} belongs to another tenant than the event's ({tenant})")


def check_dataset(prefix: str, tenant: str, path: str = "") -> None:
    if not keys.in_dataset_of(prefix, tenant):
        where = f"{path}: " if path else ""
        raise ForeignReference(f"{where}{prefix} is not a dataset of tenant {tenant} (datasets/{tenant}/<name>/)")


async def _digest(data: bytes) -> str:
    if len(data) > _THREAD_HASH_BYTES:
        return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    return hashlib.sha256(data).hexdigest()


async def _fetch(store: ObjectStore, ref: ObjectRef) -> bytes:
    try:
        data = await store.get(ref.key)
    except ObjectNotFound as exc:
        raise InputMissing(f"object {ref.key} does not exist") from exc
    if len(data) != ref.size:
        raise ReferenceMismatch(f"object {ref.key} is {len(data)} bytes; the reference says {ref.size}")
    digest = await _digest(data)
    if digest != ref.sha256:
        raise ReferenceMismatch(f"object {ref.key} has sha256 {digest[:16]}...; the reference says {ref.sha256[:16]}...")
    return data


async def check_message(store: ObjectStore | None, payload: Any, data: Any, tenant: str) -> dict[tuple[str, str], bytes]:
    """Check every reference of a decoded message by its rule; the bytes of the publisher's, checked."""
    verified: dict[tuple[str, str], bytes] = {}
    for found in references(payload, data):
        if isinstance(found.value, str):
            check_dataset(found.value, tenant, found.path)
            continue
        ref = found.value
        check_owner(ref, tenant, found.rule, found.path)
        if found.rule.written_by == "publisher" and (ref.key, ref.sha256) not in verified:
            if store is None:
                raise InvalidReference(f"{found.path}: this service cannot read {ref.key} to check it")
            verified[(ref.key, ref.sha256)] = await _fetch(store, ref)
    return verified


@contextlib.contextmanager
def checked(verified: dict[tuple[str, str], bytes]) -> Iterator[None]:
    """While a handler runs: `read` answers the references checked for its message from memory."""
    token = _checked.set(verified)
    try:
        yield
    finally:
        _checked.reset(token)


async def read(store: ObjectStore, ref: ObjectRef, tenant: str) -> bytes:
    """The bytes of `ref`, after checking whose they are. What a publisher named was checked against
    its sha256 when the message arrived (and is answered from that check); what the platform wrote
    is not hashed again (its writer hashed it once, into the reference): its size is checked."""
    check_owner(ref, tenant)
    known = _checked.get()
    if known is not None and (data := known.get((ref.key, ref.sha256))) is not None:
        return data
    try:
        data = await store.get(ref.key)
    except ObjectNotFound as exc:
        raise InputMissing(f"object {ref.key} does not exist") from exc
    if len(data) != ref.size:
        raise ReferenceMismatch(f"object {ref.key} is {len(data)} bytes; the reference says {ref.size}")
    return data
