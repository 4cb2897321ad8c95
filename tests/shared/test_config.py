from __future__ import annotations

from pathlib import Path

import pytest

from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.config import ConfigError, RuntimeSettings, load, unknown_settings

pytestmark = pytest.mark.unit


def test_settings_come_from_prefixed_environment_variables() -> None:
    s = load(
        GatewaySettings,
        {
            "MASKLINE_NATS_URL": "nats://x:1",
            "MASKLINE_PORT": "9999",
            "MASKLINE_MINIO_SECURE": "true",
            "OTHER": "ignored",
            "MASKLINE_UNKNOWN": "ignored (with a warning)",
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


def test_any_setting_can_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "minio-key"
    secret.write_text("s3cr3t\n")
    keys = tmp_path / "api-keys"
    keys.write_text("k1:tenant-a")
    s = load(GatewaySettings, {"MASKLINE_MINIO_SECRET_KEY_FILE": str(secret), "MASKLINE_API_KEYS_FILE": str(keys)})
    assert (s.minio_secret_key, s.tenants_by_key()) == ("s3cr3t", {"k1": "tenant-a"})
    # a setting that is itself a path keeps its meaning
    assert load(RuntimeSettings, {"MASKLINE_NATS_NKEY_FILE": str(secret)}).nats_nkey_file == str(secret)
    with pytest.raises(ConfigError, match="not both"):
        load(RuntimeSettings, {"MASKLINE_MINIO_SECRET_KEY": "a", "MASKLINE_MINIO_SECRET_KEY_FILE": str(secret)})
    with pytest.raises(ConfigError, match="cannot read"):
        load(RuntimeSettings, {"MASKLINE_MINIO_SECRET_KEY_FILE": str(tmp_path / "missing")})


def test_a_misspelled_variable_is_reported_with_the_nearest_known_name(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"MASKLINE_NATS_ULR": "nats://x:1", "MASKLINE_MAX_UPLOAD_BYTE": "5", "MASKLINE_TRITON_URL": "t:1"}
    assert unknown_settings(env) == {
        "MASKLINE_NATS_ULR": "MASKLINE_NATS_URL",
        "MASKLINE_MAX_UPLOAD_BYTE": "MASKLINE_MAX_UPLOAD_BYTES",
    }
    assert unknown_settings({"MASKLINE_API_KEYS_FILE": "/x", "MASKLINE_ZZZZZZZZZ": "1"}) == {"MASKLINE_ZZZZZZZZZ": None}
    load(GatewaySettings, env)  # another service's setting (Triton's URL) is not a mistake
    err = capsys.readouterr().err
    assert "MASKLINE_NATS_ULR is not a maskline setting (did you mean MASKLINE_NATS_URL?)" in err
    assert "TRITON_URL" not in err
    with pytest.raises(ConfigError, match=r"MASKLINE_NATS_ULR is not a maskline setting.*STRICT_CONFIG"):
        load(GatewaySettings, {**env, "MASKLINE_STRICT_CONFIG": "true"})
