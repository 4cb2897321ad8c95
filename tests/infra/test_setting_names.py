"""The runtime's list of every MASKLINE_* variable is generated from every settings struct."""

from __future__ import annotations

import pytest

from maskline.infra import setting_names

pytestmark = pytest.mark.unit


def test_the_list_of_known_settings_is_current() -> None:
    assert setting_names.main(["--check"]) == 0
    assert {"NATS_URL", "TRITON_URL", "API_KEYS", "NATS_CLUSTER", "HEALTH_PORT", "URL"} <= set(setting_names.names())
