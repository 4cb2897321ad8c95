"""The object-store interface every backend implements."""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from maskline.contracts.common_v1 import ObjectRef
from maskline.shared.errors import DependencyUnavailable


class StorageError(Exception):
    """Base of what the object store raises."""


class ObjectNotFound(StorageError):
    """No object under that key."""


class StoreAccessDenied(StorageError):
    """The identity has no grant for that key (S3's 403 AccessDenied; keys.STORE_ACCESS)."""


class StorageUnavailable(StorageError, DependencyUnavailable):
    """The store could not be reached or failed an operation: an outage, during which the
    consumers that need the store pause instead of failing their messages."""

    dependency = "object store"
    code = "store_unavailable"

    def __init__(self, reason: str) -> None:
        DependencyUnavailable.__init__(self, reason, dependency="object store")


def make_ref(key: str, data: bytes, content_type: str, sha256: str | None = None) -> ObjectRef:
    """The reference of `data` stored under `key`; `sha256` when the caller hashed the bytes already
    (each object is hashed once, and the hash travels in its reference)."""
    digest = sha256 if sha256 is not None else hashlib.sha256(data).hexdigest()
    return ObjectRef(key=key, size=len(data), sha256=digest, content_type=content_type)


class Digest:
    """Size and sha256 of bytes as they pass (a streamed object is never whole in memory)."""

    def __init__(self) -> None:
        self.size = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        self._hash.update(chunk)
        return chunk

    def ref(self, key: str, content_type: str) -> ObjectRef:
        return ObjectRef(key=key, size=self.size, sha256=self._hash.hexdigest(), content_type=content_type)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


class ObjectStore(Protocol):
    """Keys are `/`-separated paths such as `inputs/<tenant>/<job>/image.png`."""

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", sha256: str | None = None
    ) -> ObjectRef:
        """Store `data` under `key` atomically (readers see the old or the new object, never a part).
        `sha256`: the bytes' hash, when the caller has it (not computed again)."""
        ...

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str = "application/octet-stream"
    ) -> ObjectRef:
        """Store what `chunks` yields without holding it in memory (multipart on S3), atomically;
        the reference carries the size and sha256 of what was written."""
        ...

    async def get(self, key: str) -> bytes:
        """Return the object's bytes or raise ObjectNotFound."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""
        ...

    async def list_info(self, prefix: str) -> builtins.list[ObjectInfo]:
        """Keys under `prefix` with size and last-modified time, sorted by key."""
        ...

    async def ready(self) -> bool:
        """True when the store answers."""
        ...
