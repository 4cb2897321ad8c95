"""Object storage behind one interface: the local disk (embedded default) or MinIO/S3."""

from maskline.shared.storage.base import ObjectNotFound, ObjectStore, StorageError, make_ref
from maskline.shared.storage.factory import open_store

__all__ = ["ObjectNotFound", "ObjectStore", "StorageError", "make_ref", "open_store"]
