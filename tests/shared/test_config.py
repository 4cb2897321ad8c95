from __future__ import annotations

import pytest

from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.config import ConfigError, RuntimeSettings, load

pytestmark = pytest.mark.unit


def test_settings_come_from_prefixed_environment_variables() -> None:
    s = load(
        GatewaySettings,
        {
            "MASKLINE_NATS_URL": "nats://x:1",
            "MASKLINE_PORT": "9999",
            "MASKLINE_MINIO_SECURE": "true",
            "OTHER": "ignored",
            "MASKLINE_UNKNOWN": "ignored",
        },
    )
    assert (s.nats_url, s.port, s.minio_secure) == ("nats://x:1", 9999, True)


def test_a_bad_setting_stops_with_a_clear_message() -> None:
    with pytest.raises(ConfigError, match="port"):
        load(GatewaySettings, {"MASKLINE_PORT": "eighty"})
    with pytest.raises(ConfigError, match="store"):
        load(RuntimeSettings, {"MASKLINE_STORE": "floppy"})


def test_api_keys_map_to_tenants() -> None:
    assert GatewaySettings(api_keys="k1:a, k2:b").tenants_by_key() == {"k1": "a", "k2": "b"}
    with pytest.raises(ConfigError, match="key:tenant"):
        GatewaySettings(api_keys="lonely").tenants_by_key()
