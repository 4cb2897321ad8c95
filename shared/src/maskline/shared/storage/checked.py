"""A store that refuses what an identity's grants in `keys.STORE_ACCESS` do not allow, as MinIO
refuses it under that identity's policy. The embedded stack wraps its filesystem store in it, so a
service that starts touching an area it has no grant for fails in development and in the test
suite, not first in production."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator

from maskline.contracts.common_v1 import ObjectRef
from maskline.shared import keys
from maskline.shared.storage.base import ObjectInfo, ObjectStore, StoreAccessDenied


class AccessCheckedStore:
    def __init__(self, store: ObjectStore, identity: str) -> None:
        self.store = store
        self.identity = identity
        self.grants = keys.STORE_ACCESS.get(identity, {})

    def _allow(self, key: str, need: str) -> None:
        area = key.split("/", 1)[0]
        granted = self.grants.get(area)
        if granted is None or (need == "write" and granted != "write"):
            raise StoreAccessDenied(
                f"{self.identity} may not {need} {key!r}: keys.STORE_ACCESS grants it {granted or 'nothing'} there"
            )

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", sha256: str | None = None
    ) -> ObjectRef:
        self._allow(key, "write")
        return await self.store.put(key, data, content_type, sha256)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str = "application/octet-stream"
    ) -> ObjectRef:
        self._allow(key, "write")
        return await self.store.put_stream(key, chunks, content_type)

    async def get(self, key: str) -> bytes:
        self._allow(key, "read")
        return await self.store.get(key)

    async def exists(self, key: str) -> bool:
        self._allow(key, "read")
        return await self.store.exists(key)

    async def delete(self, key: str) -> None:
        self._allow(key, "write")
        await self.store.delete(key)

    async def list(self, prefix: str) -> list[str]:
        self._allow(prefix, "read")
        return await self.store.list(prefix)

    async def list_info(self, prefix: str) -> builtins.list[ObjectInfo]:
        self._allow(prefix, "read")
        return await self.store.list_info(prefix)

    async def ready(self) -> bool:
        return await self.store.ready()
