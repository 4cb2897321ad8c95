"""Durable object store on the local disk: the embedded default.

Writes go to a temporary file that is fsync'ed and renamed into place, so a crash never leaves
half an object under a real key.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from maskline.contracts.common_v1 import ObjectRef
from maskline.shared.storage.base import Digest, ObjectInfo, ObjectNotFound, StorageError, StorageUnavailable, make_ref


def _flush(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


class FilesystemStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._inside = str(self.root) + os.sep

    def _path(self, key: str) -> Path:
        # Lexically, without a system call per path component: the folder is the store's own (no
        # links made in it), so `..` is the only way out, and normpath removes it.
        path = os.path.normpath(os.path.join(self._inside, key))
        if not key or key.startswith("/") or not path.startswith(self._inside):
            raise StorageError(f"invalid object key {key!r}")
        return Path(path)

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", sha256: str | None = None
    ) -> ObjectRef:
        try:
            await asyncio.to_thread(self._write, self._path(key), data)
        except OSError as exc:  # disk full, read-only, I/O error: an outage, not a bad message
            raise StorageUnavailable(f"put {key}: {exc}") from exc
        return make_ref(key, data, content_type, sha256)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str = "application/octet-stream"
    ) -> ObjectRef:
        path = self._path(key)
        digest = Digest()
        try:
            handle, tmp = await asyncio.to_thread(self._open_temporary, path)
            try:
                with handle:
                    async for chunk in chunks:
                        await asyncio.to_thread(handle.write, digest.update(chunk))
                    await asyncio.to_thread(_flush, handle)
                await asyncio.to_thread(os.replace, tmp, path)
            except BaseException:
                await asyncio.to_thread(tmp.unlink, missing_ok=True)
                raise
        except OSError as exc:
            raise StorageUnavailable(f"put {key}: {exc}") from exc
        return digest.ref(key, content_type)

    @staticmethod
    def _open_temporary(path: Path) -> tuple[BinaryIO, Path]:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        return os.fdopen(fd, "wb"), Path(tmp)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:  # a folder is no object
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"get {key}: {exc}") from exc

    async def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def list(self, prefix: str) -> list[str]:
        return sorted(await asyncio.to_thread(self._keys, prefix))

    async def list_info(self, prefix: str) -> builtins.list[ObjectInfo]:
        def stat() -> builtins.list[ObjectInfo]:
            found = []
            for key in sorted(self._keys(prefix)):
                st = (self.root / key).stat()
                found.append(ObjectInfo(key=key, size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC)))
            return found

        return await asyncio.to_thread(stat)

    def _keys(self, prefix: str) -> builtins.list[str]:
        # Walk only the folder the prefix names, not the whole store.
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        return [
            str(p.relative_to(self.root))
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-") and str(p.relative_to(self.root)).startswith(prefix)
        ]

    async def ready(self) -> bool:
        return self.root.is_dir() and os.access(self.root, os.W_OK)
