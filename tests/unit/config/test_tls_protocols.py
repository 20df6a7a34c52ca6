"""A server's TLS 1.0 / 1.1 settings (its SCHANNEL registry values, exchange.md §4.6)."""

from __future__ import annotations

import pytest

from exchsim.config.load import ConfigError, load_config_text

from .test_protocol_log_limits import LAB_YAML, with_server_fields


def test_tls_1_0_and_1_1_are_off_by_default() -> None:
    server = load_config_text(LAB_YAML, "lab.yaml").servers[0]
    assert server.tls10_server_enabled is False
    assert server.tls11_server_enabled is False


def test_each_version_is_turned_on_by_itself() -> None:
    server = load_config_text(with_server_fields("Tls10ServerEnabled: $true"),
                              "lab.yaml").servers[0]
    assert server.tls10_server_enabled is True
    assert server.tls11_server_enabled is False


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_value_names_the_file_key_value_and_what_is_allowed(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(with_server_fields(f"Tls11ServerEnabled: {value}"), "lab.yaml")
    [issue] = info.value.issues
    text = str(issue)
    assert "lab.yaml" in text and "Servers[0] (EX01).Tls11ServerEnabled" in text
    assert value in text
