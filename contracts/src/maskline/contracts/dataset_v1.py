"""Dataset contracts, major version 1: expanding a dataset with the five-way augmentation.

A dataset is a prefix in object storage holding `images/<stem>.<ext>` and, optionally,
`masks/<stem>.png` (class id per pixel). Expansion writes every variant of every image (masks
transformed with nearest-neighbour) under the target prefix, plus `manifest.json`.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from maskline.contracts.common_v1 import ALL_VARIANTS, Variant, VariantName, WrittenDatasetFile, reference

EXPAND_REQUESTED = "dataset.v1.expand.requested"
EXPAND_PROGRESSED = "dataset.v1.expand.progressed"
EXPANDED = "dataset.v1.expanded"
FAILED = "dataset.v1.failed"

Prefix = Annotated[str, msgspec.Meta(pattern="^datasets/[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+/$"), reference("datasets", by="publisher")]


class DatasetExpandRequested(msgspec.Struct, frozen=True, kw_only=True):
    source: Prefix
    """e.g. `datasets/<tenant>/<name>/`"""
    target: Prefix
    variants: tuple[VariantName, ...] = ALL_VARIANTS
    angle: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)] = 15.0
    blur_sigma: Annotated[float, msgspec.Meta(ge=0.0, le=20.0)] = 1.0


class DatasetExpandProgressed(msgspec.Struct, frozen=True, kw_only=True):
    done: int
    total: int
    written: int
    skipped: int
    """Outputs already present from an earlier (interrupted) run, not written again."""


class ManifestEntry(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    variant: Variant
    image: str
    mask: str | None = None


class DatasetManifest(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    target: str
    variants: tuple[Variant, ...]
    entries: list[ManifestEntry]


class DatasetExpanded(msgspec.Struct, frozen=True, kw_only=True):
    manifest: WrittenDatasetFile
    images: int
    outputs: int
    written: int
    skipped: int
    variants: tuple[Variant, ...]


PAYLOADS: dict[str, type[msgspec.Struct]] = {
    EXPAND_REQUESTED: DatasetExpandRequested,
    EXPAND_PROGRESSED: DatasetExpandProgressed,
    EXPANDED: DatasetExpanded,
}
