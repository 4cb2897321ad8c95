"""Claim check: read the object an event names only if it is the event tenant's and is what the
event says it is (size and sha256).

An event is a claim about bytes in storage. Before a service acts on it, the claim is checked:
a key outside the event's tenant, a key no service would write, or bytes that do not match the
reference are permanent failures with a reason, never a retried `transient`.
"""

from __future__ import annotations

import asyncio
import hashlib

from maskline.contracts.common_v1 import ObjectRef
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


def check_owner(ref: ObjectRef, tenant: str) -> None:
    """Raise unless `ref.key` is well formed and belongs to `tenant`."""
    try:
        owner = keys.tenant_of(ref.key)
    except keys.InvalidKey as exc:
        raise InvalidReference(str(exc)) from exc
    if owner != tenant:
        raise ForeignReference(f"object {ref.key} belongs to another tenant than the event's ({tenant})")


def check_dataset(prefix: str, tenant: str) -> None:
    if not keys.in_dataset_of(prefix, tenant):
        raise ForeignReference(f"{prefix} is not a dataset of tenant {tenant} (datasets/{tenant}/<name>/)")


async def _digest(data: bytes) -> str:
    if len(data) > _THREAD_HASH_BYTES:
        return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    return hashlib.sha256(data).hexdigest()


async def read(store: ObjectStore, ref: ObjectRef, tenant: str) -> bytes:
    """The bytes of `ref`, after checking whose they are and that they are the ones referenced."""
    check_owner(ref, tenant)
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
