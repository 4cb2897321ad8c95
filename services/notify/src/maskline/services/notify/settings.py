from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class NotifySettings(RuntimeSettings, kw_only=True, frozen=True):
    webhook_timeout_s: float = 10.0
    """How long a receiver has to answer one delivery."""
