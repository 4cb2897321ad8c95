"""The labelled images of a dataset (`images/<stem>.*` with `masks/<stem>.png`) and the hash that
names their content: what evaluation scores on and training learns from, read the same way."""

from __future__ import annotations

import hashlib

from maskline.shared import keys
from maskline.shared.storage import ObjectStore


async def labelled_pairs(store: ObjectStore, dataset: str, limit: int) -> list[tuple[str, str]]:
    """(image key, mask key) of every image that has a mask, in name order, at most `limit`."""
    masks = {keys.stem_of(key): key for key in await store.list(keys.dataset_part(dataset, keys.MASKS))}
    found = []
    for key in sorted(await store.list(keys.dataset_part(dataset, keys.IMAGES))):
        stem = keys.stem_of(key)
        if stem in masks:
            found.append((key, masks[stem]))
    return found[:limit]


class ContentHash:
    """The dataset's content hash: of the sorted (file name, image sha256, mask sha256) list, so the
    same number means the same data whatever the dataset is called."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def add(self, image_key: str, image: bytes, mask: bytes) -> None:
        filename = image_key.rsplit("/", 1)[-1]
        self._digest.update(f"{filename}\0{_sha(image)}\0{_sha(mask)}\n".encode())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
