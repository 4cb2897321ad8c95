from __future__ import annotations

from maskline.shared.config import RuntimeSettings


class AuditSettings(RuntimeSettings, kw_only=True, frozen=True):
    concurrency: int = 1
    audit_signing_key_file: str = ".maskline/credentials/audit-signing.key"
    """Hex Ed25519 seed (mode 0600) that signs every record and checkpoint; its public half is published."""
    checkpoint_every_s: float = 5.0
    """How often a signed checkpoint of the head is appended (when new records arrived)."""
