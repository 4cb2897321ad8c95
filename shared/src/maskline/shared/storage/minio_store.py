"""Object store on MinIO or any S3-wire server, through the `minio` SDK (blocking; run in threads)."""

from __future__ import annotations

import asyncio
import builtins
import io
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import BinaryIO, TypeVar, cast

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error
from urllib3.exceptions import HTTPError

from maskline.contracts.common_v1 import ObjectRef
from maskline.shared.storage.base import (
    Digest,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
    StoreAccessDenied,
    make_ref,
)

T = TypeVar("T")

#: The SDK's defaults wait 5 minutes to connect and retry 5 times (~6 s against a refused port):
#: an outage must surface in about a second, so that the gateway refuses at once with 503
#: `store_unavailable` and workers pause instead of holding their messages through the retries.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 60.0
RETRIES = 2
#: Multipart part size of a streamed upload: the SDK holds one part in memory (S3 allows 10,000
#: parts, so 16 MiB parts reach 156 GiB).
PART_BYTES = 16 * 1024 * 1024


def http_client() -> urllib3.PoolManager:
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        maxsize=16,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=RETRIES, backoff_factor=0.1, status_forcelist=[500, 502, 503, 504]),
    )


class ChunkReader:
    """A blocking `read(n)` over an async iterator of chunks, for the SDK running in a thread: each
    missing chunk is pulled on the event loop, so the upload never holds more than one part."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop, digest: Digest) -> None:
        self._chunks = chunks
        self._loop = loop
        self._digest = digest
        self._buffer = bytearray()
        self._done = False

    async def _pull(self) -> bytes | None:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return None

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            chunk = asyncio.run_coroutine_threadsafe(self._pull(), self._loop).result()
            if chunk is None:
                self._done = True
            else:
                self._buffer += self._digest.update(chunk)
        size = len(self._buffer) if size < 0 else size
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def failure(what: str, exc: Exception) -> StorageError:
    """An S3 answer as our error: refused access is a configuration fault (the identity's policy
    lacks a grant), not an outage to wait out; everything else is the store failing."""
    if isinstance(exc, S3Error) and exc.code == "AccessDenied":
        return StoreAccessDenied(f"{what}: {exc.code}: the identity's policy does not allow it")
    return StorageUnavailable(f"{what}: {exc}")


class MinioStore:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, secure: bool = False) -> None:
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http_client())
        self.bucket = bucket
        self._bucket_checked = False

    def _ensure_bucket(self) -> None:
        if not self._bucket_checked:
            try:
                exists = self.client.bucket_exists(self.bucket)
            except S3Error as exc:
                # A least-privilege identity may list only its own areas, not ask about the bucket
                # (HeadBucket needs an unconditional s3:ListBucket): its setup made the bucket.
                if exc.code != "AccessDenied":
                    raise
                exists = True
            if not exists:
                self.client.make_bucket(self.bucket)
            self._bucket_checked = True

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        self._ensure_bucket()
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def _get(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", sha256: str | None = None
    ) -> ObjectRef:
        try:
            await asyncio.to_thread(self._put, key, data, content_type)
        except (S3Error, HTTPError, OSError) as exc:
            raise failure(f"put {key}", exc) from exc
        return make_ref(key, data, content_type, sha256)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str = "application/octet-stream"
    ) -> ObjectRef:
        digest = Digest()
        reader = ChunkReader(chunks, asyncio.get_running_loop(), digest)

        def upload() -> None:
            self._ensure_bucket()  # unknown length: multipart in PART_BYTES parts, completed atomically
            stream = cast(BinaryIO, reader)  # the SDK only calls read(n)
            self.client.put_object(self.bucket, key, stream, -1, content_type=content_type, part_size=PART_BYTES)

        await self._call(f"put {key}", upload)
        return digest.ref(key, content_type)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._get, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise ObjectNotFound(key) from exc
            raise failure(f"get {key}", exc) from exc
        except (HTTPError, OSError) as exc:
            raise failure(f"get {key}", exc) from exc

    async def _call(self, what: str, work: Callable[[], T]) -> T:
        """Run a blocking SDK call in a thread; the server down or failing is an outage."""
        try:
            return await asyncio.to_thread(work)
        except (S3Error, HTTPError, OSError) as exc:
            raise failure(what, exc) from exc

    async def exists(self, key: str) -> bool:
        def stat() -> bool:
            try:
                self.client.stat_object(self.bucket, key)
                return True
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                    return False
                raise

        return await self._call(f"stat {key}", stat)

    async def delete(self, key: str) -> None:
        await self._call(f"delete {key}", lambda: self.client.remove_object(self.bucket, key))

    async def list(self, prefix: str) -> list[str]:
        def keys() -> list[str]:
            self._ensure_bucket()
            return sorted(
                o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True) if o.object_name
            )

        return await self._call(f"list {prefix}", keys)

    async def list_info(self, prefix: str) -> builtins.list[ObjectInfo]:
        def objects() -> builtins.list[ObjectInfo]:
            self._ensure_bucket()
            found = [
                ObjectInfo(key=o.object_name, size=int(o.size or 0), modified=o.last_modified or datetime.now(UTC))
                for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
                if o.object_name
            ]
            return sorted(found, key=lambda info: info.key)

        return await self._call(f"list {prefix}", objects)

    async def ready(self) -> bool:
        try:
            await asyncio.to_thread(self._ensure_bucket)
            return True
        except (S3Error, HTTPError, OSError):
            return False
