"""The receive protocol log's limits on a server (Set-TransportService, exchange.md §6.1)."""

from __future__ import annotations

import datetime

import pytest

from exchsim.config.load import ConfigError, load_config_text
from exchsim.config.model import MB
from tests.integration.conftest import LAB_YAML  # Contoso alone

SERVER = "{Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, Version: \"15.2\"}"


def with_server_fields(fields: str) -> str:
    assert SERVER in LAB_YAML
    return LAB_YAML.replace(SERVER, SERVER[:-1] + ", " + fields + "}")


def test_the_defaults_are_exchanges() -> None:
    server = load_config_text(LAB_YAML, "lab.yaml").servers[0]
    assert server.receive_protocol_log_max_file_size == 10 * MB
    assert server.receive_protocol_log_max_directory_size == 250 * MB
    assert server.receive_protocol_log_max_age == datetime.timedelta(days=30)


def test_sizes_ages_and_unlimited_as_exchange_writes_them() -> None:
    server = load_config_text(with_server_fields(
        'ReceiveProtocolLogMaxFileSize: 2KB, ReceiveProtocolLogMaxDirectorySize: unlimited, '
        'ReceiveProtocolLogMaxAge: "7.00:00:00"'), "lab.yaml").servers[0]
    assert server.receive_protocol_log_max_file_size == 2048
    assert server.receive_protocol_log_max_directory_size is None
    assert server.receive_protocol_log_max_age == datetime.timedelta(days=7)


@pytest.mark.parametrize("fields", [
    "ReceiveProtocolLogMaxFileSize: 20MB, ReceiveProtocolLogMaxDirectorySize: 10MB",
    "ReceiveProtocolLogMaxFileSize: Unlimited",
])
def test_a_file_size_above_the_directory_size_is_refused(fields: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(with_server_fields(fields), "lab.yaml")
    [issue] = info.value.issues
    assert "Servers[0] (EX01).ReceiveProtocolLogMaxFileSize" in str(issue)
    assert "must not be larger than ReceiveProtocolLogMaxDirectorySize" in str(issue)


def test_message_tracking_limits_are_exchanges_and_checked_alike() -> None:
    """The message tracking log's limits (Set-TransportService, exchange.md §6.2)."""
    server = load_config_text(with_server_fields(
        'MessageTrackingLogMaxFileSize: 1MB, MessageTrackingLogMaxAge: "2.00:00:00", '
        'MessageTrackingLogEnabled: false, MessageTrackingLogSubjectLoggingEnabled: false'),
        "lab.yaml").servers[0]
    assert server.message_tracking_log_max_file_size == MB
    assert server.message_tracking_log_max_directory_size == 1000 * MB
    assert server.message_tracking_log_max_age == datetime.timedelta(days=2)
    assert not server.message_tracking_log_enabled
    assert not server.message_tracking_log_subject_logging_enabled
    with pytest.raises(ConfigError) as info:
        load_config_text(with_server_fields(
            "MessageTrackingLogMaxFileSize: 20MB, MessageTrackingLogMaxDirectorySize: 10MB"),
            "lab.yaml")
    [issue] = info.value.issues
    assert "Servers[0] (EX01).MessageTrackingLogMaxFileSize" in str(issue)
    assert "must not be larger than MessageTrackingLogMaxDirectorySize" in str(issue)


def test_send_log_settings_are_exchanges_defaults() -> None:
    """Set-TransportService: IntraOrgConnectorProtocolLoggingLevel None; Set-FrontendTransportService:
    Verbose; the Send log's limits those of the receive log (exchange.md §6.1)."""
    server = load_config_text(LAB_YAML, "lab.yaml").servers[0]
    assert server.intra_org_connector_protocol_logging_level.value == "None"
    assert server.frontend_transport_service.intra_org_connector_protocol_logging_level.value == (
        "Verbose")
    assert server.send_protocol_log_max_file_size == 10 * MB
    assert server.send_protocol_log_max_directory_size == 250 * MB
    assert server.send_protocol_log_max_age == datetime.timedelta(days=30)
    server = load_config_text(with_server_fields(
        "IntraOrgConnectorProtocolLoggingLevel: verbose, "
        "FrontendTransportService: {IntraOrgConnectorProtocolLoggingLevel: None}"),
        "lab.yaml").servers[0]
    assert server.intra_org_connector_protocol_logging_level.value == "Verbose"
    assert server.frontend_transport_service.intra_org_connector_protocol_logging_level.value == (
        "None")


@pytest.mark.parametrize(("fields", "key", "message"), [
    ("IntraOrgConnectorProtocolLoggingLevel: Loud",
     "Servers[0] (EX01).IntraOrgConnectorProtocolLoggingLevel",
     "'Loud' is not allowed: expected one of None, Verbose"),
    ("FrontendTransportService: {IntraOrgConnectorProtocolLoggingLevel: Loud}",
     "Servers[0] (EX01).FrontendTransportService.IntraOrgConnectorProtocolLoggingLevel",
     "'Loud' is not allowed: expected one of None, Verbose"),
    ("SendProtocolLogMaxFileSize: 20MB, SendProtocolLogMaxDirectorySize: 10MB",
     "Servers[0] (EX01).SendProtocolLogMaxFileSize",
     "must not be larger than SendProtocolLogMaxDirectorySize"),
])
def test_bad_send_log_settings_name_file_key_value_and_what_is_allowed(
        fields: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(with_server_fields(fields), "lab.yaml")
    [issue] = info.value.issues
    assert str(issue).startswith(f"lab.yaml: {key}: ")
    assert message in str(issue)
