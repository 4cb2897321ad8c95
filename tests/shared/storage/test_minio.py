"""The MinIO adapter over the real S3 wire protocol (moto's S3 server on a free local port)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from maskline.infra.embedded.process import free_port
from maskline.shared.config import RuntimeSettings
from maskline.shared.errors import DependencyUnavailable
from maskline.shared.storage import StorageError, open_store
from maskline.shared.storage.base import StorageUnavailable
from maskline.shared.storage.minio_store import MinioStore
from tests.shared.storage.contract import check_store_contract, check_streamed_put

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


async def test_minio_store_meets_the_contract_over_s3(s3_endpoint: str) -> None:
    settings = RuntimeSettings(
        store="minio", minio_endpoint=s3_endpoint, minio_access_key="test", minio_secret_key="test", minio_bucket="maskline-test"
    )
    store = open_store(settings)
    assert isinstance(store, MinioStore)
    await check_store_contract(store)
    await check_streamed_put(store)  # 40 MiB: a multipart upload of three 16 MiB parts


async def test_unreachable_minio_is_a_storage_error(s3_endpoint: str) -> None:
    store = MinioStore(f"127.0.0.1:{free_port()}", "a", "b", "bucket")
    store.client._http.connection_pool_kw["retries"] = 0  # fail fast instead of urllib3's retries
    assert not await store.ready()
    with pytest.raises(StorageError):
        await store.put("k", b"x")


async def test_an_s3_outage_is_a_dependency_outage_and_the_store_resumes_after_it() -> None:
    """A stopped S3 server makes every call raise StorageUnavailable — a DependencyUnavailable, on
    which consumers pause instead of failing messages — and the same store works once it is back."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store = MinioStore(f"127.0.0.1:{port}", "test", "test", "outage")
    store.client._http.connection_pool_kw["retries"] = 0
    await store.put("inputs/t/a.bin", b"kept")
    server.stop()
    for call in (store.get("inputs/t/a.bin"), store.put("inputs/t/b.bin", b"x"), store.exists("inputs/t/a.bin")):
        with pytest.raises(StorageUnavailable) as err:
            await call
        assert isinstance(err.value, DependencyUnavailable) and err.value.code == "store_unavailable"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        assert await store.get("inputs/t/a.bin") == b"kept"
        await store.put("inputs/t/b.bin", b"x")
    finally:
        server.stop()
