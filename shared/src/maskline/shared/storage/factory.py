"""Pick the object-store backend named by configuration."""

from __future__ import annotations

from maskline.shared.config import RuntimeSettings
from maskline.shared.storage.base import ObjectStore
from maskline.shared.storage.filesystem import FilesystemStore
from maskline.shared.storage.minio_store import MinioStore


def open_store(settings: RuntimeSettings) -> ObjectStore:
    if settings.store == "minio":
        return MinioStore(
            settings.minio_endpoint,
            settings.minio_access_key,
            settings.minio_secret_key,
            settings.minio_bucket,
            secure=settings.minio_secure,
        )
    return FilesystemStore(settings.store_path)
