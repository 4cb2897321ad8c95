from __future__ import annotations

from maskline.shared.config import ConfigError, RuntimeSettings


class GatewaySettings(RuntimeSettings, kw_only=True, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: str = "dev-key:demo"
    """Comma-separated `key:tenant` pairs."""
    operators: str = "demo"
    """Comma-separated tenants that operate the platform: they see and re-drive every dead letter."""
    max_upload_bytes: int = 20_000_000
    """Images and every other request body, except model weights."""
    max_model_bytes: int = 4 * 1024**3
    """Model weights streamed to `PUT /v1/models/weights/{sha256}` (default 4 GiB)."""
    max_pixels: int = 40_000_000
    max_wait_s: float = 120.0
    allowed_formats: str = "PNG,JPEG,WEBP,TIFF,BMP,GIF"
    audit_public_key_file: str = ".maskline/credentials/audit-signing.pub"
    tenant_rate_per_s: float = 50.0
    """Segmentation requests a tenant may start per second (token bucket, per gateway replica)."""
    tenant_burst: float = 100.0
    tenant_max_jobs: int = 200
    """Jobs of one tenant accepted by this replica and not finished yet, beyond which it answers 429."""
    tenant_limits: str = ""
    """Per-tenant overrides, `tenant:rate/burst/jobs;...` (e.g. `trial:1/2/3`)."""

    def limits_of(self) -> dict[str, tuple[float, float, int]]:
        found: dict[str, tuple[float, float, int]] = {}
        for item in filter(None, (p.strip() for p in self.tenant_limits.split(";"))):
            tenant, _, spec = item.partition(":")
            try:
                rate, burst, jobs = spec.split("/")
                found[tenant] = (float(rate), float(burst), int(jobs))
            except ValueError as exc:
                raise ConfigError(f"maskline: MASKLINE_TENANT_LIMITS entry {item!r} is not tenant:rate/burst/jobs") from exc
        return found

    def operator_tenants(self) -> set[str]:
        return {t.strip() for t in self.operators.split(",") if t.strip()}

    def tenants_by_key(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.api_keys.split(","))):
            key, sep, tenant = item.partition(":")
            if not sep or not key or not tenant:
                raise ConfigError(f"maskline: MASKLINE_API_KEYS entry {item!r} is not key:tenant")
            pairs[key] = tenant
        return pairs
