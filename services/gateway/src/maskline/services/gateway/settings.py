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
    max_failed_keys: int = 20
    """Unknown API keys one client address may present per minute before it is refused for that
    minute (429 `too_many_failed_keys`, even with a good key): guessing keys takes forever."""
    trust_forwarded_for: bool = False
    """The gateway is reached only through a proxy that sets `X-Forwarded-For` (compose's Caddy):
    the client address is its last entry. Off: the connection's address."""

    sign_in_failures: int = 5
    """Failed sign-ins in a row after which an account is locked for `lockout_s` (429 `account_locked`)."""
    lockout_s: float = 900.0
    max_people: int = 1000
    """People one tenant may have (the accounts bucket is shared by every tenant)."""
    password_profile: str = "RFC_9106_LOW_MEMORY"
    """argon2id cost (argon2-cffi's `profiles`): the default is RFC 9106's second recommendation
    (64 MiB, 3 passes). The test stacks use `CHEAPEST`; a stored hash keeps its own cost."""
    oidc_issuer: str = ""
    """An OpenID Connect provider (`https://idp.example.com`): people may sign in through it.
    Empty: passwords only."""
    oidc_domains: str = ""
    """Comma-separated `tenant:domain` pairs: whose people may sign in through the provider, by
    their e-mail's domain (`tenant-a:a.example,tenant-a:a.example.org`). None: nobody."""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    public_url: str = ""
    """Where browsers reach the gateway (`https://maskline.example.com`): the identity provider
    sends them back to `<public_url>/v1/sign-in/oidc/callback`."""

    def operator_tenants(self) -> set[str]:
        return {t.strip() for t in self.operators.split(",") if t.strip()}

    def is_operator(self, tenant: str) -> bool:
        return tenant in self.operator_tenants()

    def oidc_domains_of(self, tenant: str) -> set[str]:
        pairs = (p.strip().partition(":") for p in self.oidc_domains.split(","))
        return {domain.strip().casefold() for who, sep, domain in pairs if sep and who.strip() == tenant}

    def tenants_by_key(self) -> dict[str, str]:
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.api_keys.split(","))):
            key, sep, tenant = item.partition(":")
            if not sep or not key or not tenant:
                raise ConfigError(f"maskline: MASKLINE_API_KEYS entry {item!r} is not key:tenant")
            pairs[key] = tenant
        return pairs
