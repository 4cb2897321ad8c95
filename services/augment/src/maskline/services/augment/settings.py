from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class AugmentSettings(RuntimeSettings, kw_only=True, frozen=True):
    progress_every: int = 10
    """Publish a progress event after this many dataset images."""
