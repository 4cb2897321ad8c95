"""The behaviour every ObjectStore backend must show; run against each backend."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from maskline.shared.storage import ObjectNotFound, ObjectStore


async def check_store_contract(store: ObjectStore) -> None:
    assert await store.ready()
    ref = await store.put("inputs/t1/job1/image.png", b"\x89PNG data", "image/png")
    assert ref.key == "inputs/t1/job1/image.png"
    assert ref.size == 9 and ref.sha256 == hashlib.sha256(b"\x89PNG data").hexdigest()
    assert ref.content_type == "image/png"
    assert await store.get(ref.key) == b"\x89PNG data"
    assert await store.exists(ref.key)
    await store.put("inputs/t1/job1/image.png", b"v2")  # overwrite is allowed (idempotent retries)
    assert await store.get(ref.key) == b"v2"
    await store.put("inputs/t1/job2/upload", b"x")
    await store.put("outputs/t1/job1/mask.png", b"m")
    assert await store.list("inputs/t1/") == ["inputs/t1/job1/image.png", "inputs/t1/job2/upload"]
    infos = await store.list_info("inputs/t1/")
    assert [(i.key, i.size) for i in infos] == [("inputs/t1/job1/image.png", 2), ("inputs/t1/job2/upload", 1)]
    assert all(abs((datetime.now(UTC) - i.modified).total_seconds()) < 300 for i in infos)
    assert await store.list_info("nothing/here/") == []
    await store.delete("inputs/t1/job2/upload")
    assert not await store.exists("inputs/t1/job2/upload")
    with pytest.raises(ObjectNotFound):
        await store.get("inputs/t1/nope")
    big = bytes(range(256)) * 40_000  # 10 MB goes through in one piece
    await store.put("models/m/1/model.pt", big)
    assert await store.get("models/m/1/model.pt") == big


async def check_streamed_put(store: ObjectStore) -> None:
    """A streamed object is whole and exact, with its size and sha256, across several parts."""
    part = bytes(range(256)) * 4096  # 1 MiB

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(40):  # 40 MiB: several multipart parts on S3
            yield part[i:] + part[:i]

    expected = b"".join([part[i:] + part[:i] for i in range(40)])
    ref = await store.put_stream("inputs/t1/model-uploads/big", chunks(), "application/octet-stream")
    assert (ref.size, ref.sha256) == (len(expected), hashlib.sha256(expected).hexdigest())
    assert await store.get(ref.key) == expected
