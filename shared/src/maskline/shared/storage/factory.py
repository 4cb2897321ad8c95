"""Pick the object-store backend named by configuration."""

from __future__ import annotations

from maskline.shared.config import RuntimeSettings
from maskline.shared.storage.base import ObjectStore
from maskline.shared.storage.checked import AccessCheckedStore
from maskline.shared.storage.filesystem import FilesystemStore
from maskline.shared.storage.minio_store import MinioStore


def open_store(settings: RuntimeSettings, identity: str = "") -> ObjectStore:
    """The configured store; with `store_check_access`, a filesystem store refuses what `identity`
    has no grant for (MinIO enforces the same grants itself, through each identity's policy)."""
    if settings.store == "minio":
        return MinioStore(
            settings.minio_endpoint,
            settings.minio_access_key,
            settings.minio_secret_key,
            settings.minio_bucket,
            secure=settings.minio_secure,
        )
    store = FilesystemStore(settings.store_path)
    return AccessCheckedStore(store, identity) if settings.store_check_access and identity else store
