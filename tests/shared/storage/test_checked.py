"""The embedded stack's filesystem store refuses what an identity's grants do not allow."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskline.shared.config import RuntimeSettings
from maskline.shared.storage import open_store
from maskline.shared.storage.base import StoreAccessDenied
from maskline.shared.storage.checked import AccessCheckedStore
from maskline.shared.storage.filesystem import FilesystemStore

pytestmark = pytest.mark.unit


async def test_reads_and_writes_follow_the_identitys_grants(tmp_path: Path) -> None:
    settings = RuntimeSettings(store_path=str(tmp_path), store_check_access=True)
    await FilesystemStore(tmp_path).put("models/acme/m/1/model.pt", b"weights")
    ingest, infer = open_store(settings, "ingest"), open_store(settings, "infer")
    assert isinstance(ingest, AccessCheckedStore)
    await ingest.put("inputs/acme/job/image.png", b"png")  # ingest writes inputs
    assert await infer.get("inputs/acme/job/image.png") == b"png"  # infer reads them
    assert await infer.get("models/acme/m/1/model.pt") == b"weights"
    with pytest.raises(StoreAccessDenied, match="infer may not write"):
        await infer.put("inputs/acme/job/image.png", b"forged")  # but may not change them
    with pytest.raises(StoreAccessDenied, match="ingest may not read"):
        await ingest.list("models/acme/")
    with pytest.raises(StoreAccessDenied):
        await open_store(settings, "audit").get("inputs/acme/job/image.png")  # audit holds no grant


def test_without_the_setting_the_store_is_unchecked(tmp_path: Path) -> None:
    assert isinstance(open_store(RuntimeSettings(store_path=str(tmp_path)), "ingest"), FilesystemStore)
