from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class AuditSettings(RuntimeSettings, kw_only=True, frozen=True):
    concurrency: int = 1
