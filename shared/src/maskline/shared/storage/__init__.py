"""Object storage behind one interface: the local disk (embedded default) or MinIO/S3."""

from maskline.shared.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageUnavailable,
    StoreAccessDenied,
    make_ref,
)
from maskline.shared.storage.factory import open_store

__all__ = [
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "StorageError",
    "StorageUnavailable",
    "StoreAccessDenied",
    "make_ref",
    "open_store",
]
