from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class WeightsSettings(RuntimeSettings, kw_only=True, frozen=True):
    guard_check_every_s: float = 30.0
    """How often aliases with a rollback guard are checked against their rules."""
