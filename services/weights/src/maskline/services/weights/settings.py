from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class WeightsSettings(RuntimeSettings, kw_only=True, frozen=True):
    pass
