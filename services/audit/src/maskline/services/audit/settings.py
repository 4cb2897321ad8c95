from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class AuditSettings(RuntimeSettings, kw_only=True, frozen=True):
    concurrency: int = 1
    audit_signing_key_file: str = ".maskline/credentials/audit-signing.key"
    """Hex Ed25519 seed (mode 0600) that signs every record and checkpoint; its public half is published."""
    checkpoint_every_s: float = 5.0
    """How often a signed checkpoint of the head is appended (when new records arrived)."""
    quality_series: int = 200
    """Most model versions (with alias) the per-version Prometheus series are kept for; the one seen
    least recently goes first (bounded cardinality)."""
    drift_window_hours: int = 24
    """Live hours compared with a version's evaluation reference."""
    drift_every_s: float = 60.0
    """How often the versions with recent jobs are checked for drift (the Prometheus gauges)."""
