from __future__ import annotations

from pathlib import Path

import pytest

from maskline.shared.storage import StorageError
from maskline.shared.storage.filesystem import FilesystemStore
from tests.shared.storage.contract import check_store_contract, check_streamed_put

pytestmark = pytest.mark.unit


async def test_filesystem_store_meets_the_contract(tmp_path: Path) -> None:
    await check_store_contract(FilesystemStore(tmp_path))
    await check_streamed_put(FilesystemStore(tmp_path))


async def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "root")
    for key in ("../outside", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(StorageError):
            await store.put(key, b"x")


async def test_no_partial_files_are_left_behind(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    await store.put("a/b", b"123")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b"]
