"""The loader's seams: one object validated alone, the one cascade rule, resolution as a pure
function, and issue order carried as data."""

from __future__ import annotations

import pytest

from exchsim.config.issues import ConfigError, IssueLog, place
from exchsim.config.load import load_config_text
from exchsim.config.model import AuthMechanism, Server
from exchsim.config.resolve import resolve_connectors
from exchsim.config.validate import (
    check_conflicts,
    validate_connector,
    validate_lab,
    validate_server,
)
from tests.unit.config.test_load import ORG, config

EX01 = Server.model_validate(
    {"Name": "EX01", "Role": "Mailbox", "Fqdn": "ex01.contoso.com", "Address": "127.0.10.1"}
)
RELAY = {
    "Name": "Relay",
    "Server": "EX01",
    "Bindings": ["0.0.0.0:2600"],
    "AuthMechanism": ["Tls"],
    "PermissionGroups": ["AnonymousUsers"],
}


# --- one connector, alone -----------------------------------------------------------------------


def test_one_valid_connector_validates_alone() -> None:
    log = IssueLog("shell")
    connector = validate_connector(RELAY, EX01, log)
    assert log.items == []
    assert connector is not None
    assert connector.identity == "EX01\\Relay"
    assert connector.auth_mechanism == frozenset({AuthMechanism.TLS})


def test_one_connector_alone_reports_its_rules_in_order() -> None:
    log = IssueLog("shell")
    spec = {**RELAY, "AuthMechanism": ["None", "Tls"], "Bindings": ["127.0.10.9:2600"],
            "MaxMessageSize": "1KB"}
    connector = validate_connector(spec, EX01, log, index=0)
    assert connector is not None  # every value parsed; the rules failed
    assert [(i.key_path, i.order) for i in log.items] == [
        ("ReceiveConnectors[0] (Relay).AuthMechanism", place("ReceiveConnectors", 0)),
        ("ReceiveConnectors[0] (Relay).MaxMessageSize", place("ReceiveConnectors", 0)),
        ("ReceiveConnectors[0] (Relay).Bindings[0]", place("ReceiveConnectors", 0)),
    ]
    assert "None must be alone" in log.items[0].message
    assert log.items[1].message.startswith(
        "'1KB' = 1 KB (1,024 bytes) is not allowed: MaxMessageSize must be "
        "64 KB (65,536 bytes) to 2 GB (2,147,483,647 bytes) (exchange.md §3.1)"
    )


def test_one_connector_with_a_bad_value_is_still_checked_on_the_rest() -> None:
    log = IssueLog("shell")
    spec = {**RELAY, "AuthMechanism": ["Tls", "Bogus"], "RequireTLS": True, "Banner": "hello"}
    connector = validate_connector(spec, EX01, log, index=0)
    assert connector is not None
    keys = [i.key_path.rsplit(".", 1)[1] for i in log.items]
    # AuthMechanism failed: RequireTLS's rule reads it, so it is not reported; Banner's is.
    assert keys == ["AuthMechanism", "Banner"]
    assert log.failed("ReceiveConnector", "EX01\\Relay", "AuthMechanism")
    assert log.failed("ReceiveConnector", "ex01\\relay")  # the connector as a whole
    assert not log.failed("ReceiveConnector", "EX01\\Relay", "Banner")


def test_a_connector_without_name_cannot_be_built() -> None:
    log = IssueLog("shell")
    assert validate_connector({**RELAY, "Name": ""}, EX01, log) is None
    assert [i.key_path for i in log.items] == ["EX01\\ (default connector of EX01).Name"]


# --- the one cascade rule -----------------------------------------------------------------------


def test_an_issue_needing_a_failed_subject_is_dropped() -> None:
    log = IssueLog("f")
    log.fail("Server", "EX02", "Fqdn")
    log.add("a", 1, "needs the key that failed", needs=(("server", "ex02", "fqdn"),))
    log.add("b", 1, "needs the object whose key failed", needs=(("Server", "EX02"),))
    log.add("c", 1, "needs another key", needs=(("Server", "EX02", "Address"),))
    log.add("d", 1, "needs another object", needs=(("Server", "EX01"),))
    assert [i.key_path for i in log.items] == ["c", "d"]
    log.fail("Server", "EX01")
    log.add("e", 1, "needs a key of an object that failed", needs=(("Server", "EX01", "Fqdn"),))
    assert [i.key_path for i in log.items] == ["c", "d"]


def test_conflicts_skip_a_connector_that_failed() -> None:
    log = IssueLog("f")
    a = validate_connector({**RELAY, "RemoteIPRanges": ["127.0.22.0/24"]}, EX01, log, index=0)
    b = validate_connector(
        {**RELAY, "Name": "Other", "RemoteIPRanges": ["127.0.22.0/24"]}, EX01, log, index=1
    )
    assert a is not None and b is not None and log.items == []
    check_conflicts([(a, 0), (b, 1)], log)
    assert [i.key_path for i in log.items] == ["ReceiveConnectors[1] (Other).RemoteIPRanges[0]"]

    log = IssueLog("f")
    a = validate_connector({**RELAY, "RemoteIPRanges": ["127.0.22.0/24"]}, EX01, log, index=0)
    b = validate_connector(
        {**RELAY, "Name": "Other", "RemoteIPRanges": ["127.0.22.0/24"], "MaxHopCount": "x"},
        EX01, log, index=1,
    )
    assert a is not None and b is not None
    check_conflicts([(a, 0), (b, 1)], log)
    assert [i.key_path for i in log.items] == ["ReceiveConnectors[1] (Other).MaxHopCount"]


def test_a_bad_server_address_is_reported_once_not_on_each_binding() -> None:
    text = config(
        '  - {Name: R, Server: EX01, Bindings: ["127.0.10.7:2600"]}\n',
        servers="Servers:\n  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, "
        "Address: not-an-ip}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "x.yaml")
    assert [i.key_path for i in info.value.issues] == ["Servers[0] (EX01).Address"]


def test_a_reference_to_a_server_that_failed_is_not_reported_as_unknown() -> None:
    text = ORG.replace("Server: EX01", "Server: EX02") + (
        "Servers:\n"
        "  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1}\n"
        "  - {Name: EX02, Role: Mailbox, Fqdn: ex02.contoso.com, Address: 127.0.10.2, X: 1}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "x.yaml")
    assert [i.key_path for i in info.value.issues] == ["Servers[1] (EX02).X"]


# --- servers and lab alone ----------------------------------------------------------------------


def test_one_server_alone_keeps_a_misshapen_value_usable() -> None:
    log = IssueLog("f")
    raw = {"Name": "EX01", "Role": "Mailbox", "Fqdn": "bad fqdn", "Address": "127.0.10.1"}
    server = validate_server(raw, 0, log)
    assert server is not None
    assert [i.key_path for i in log.items] == ["Servers[0] (EX01).Fqdn"]
    assert log.failed("Server", "EX01", "Fqdn") and not log.failed("Server", "EX01", "Address")


def test_the_sink_address_is_checked_by_its_type() -> None:
    log = IssueLog("f")
    assert validate_lab({"InternetSink": {"Address": "nope"}}, [], log) is None
    assert [(i.key_path, i.message) for i in log.items] == [
        ("Lab.InternetSink.Address",
         "'nope' is not allowed: expected an IP address like 127.0.10.250"),
    ]


# --- resolution, pure ---------------------------------------------------------------------------


def test_resolution_is_pure_data() -> None:
    raw = [
        {"Name": "Default Frontend EX01", "Server": "EX01", "MaxMessageSize": "20MB"},
        {"Name": "Relay", "Server": "EX01", "Usage": "Internet", "Bindings": ["0.0.0.0:2600"]},
        {"Name": "Lost", "Server": "EX09"},
    ]
    first = resolve_connectors([EX01], raw)
    again = resolve_connectors([EX01], raw)
    assert first == again
    assert raw[0] == {"Name": "Default Frontend EX01", "Server": "EX01", "MaxMessageSize": "20MB"}
    names = [spec.raw["Name"] for spec in first.specs]
    assert names[0] == "Default Frontend EX01" and names[-1] == "Relay" and len(names) == 7
    frontend, relay = first.specs[0], first.specs[-1]
    assert frontend.index == 0 and frontend.given == {"Name", "Server", "MaxMessageSize"}
    assert frontend.raw["MaxMessageSize"] == "20MB" and frontend.raw["Bindings"][0] == "0.0.0.0:25"
    assert relay.raw["PermissionGroups"] == ["AnonymousUsers"]  # Usage Internet's default
    assert relay.raw["TransportRole"] == "HubTransport"
    assert [o.index for o in first.orphans] == [2]
    assert [(f.key_path, f.needs) for f in first.findings] == [
        ("ReceiveConnectors[2] (Lost).Server", (("ServerName", "EX09"),)),
    ]


# --- order is data ------------------------------------------------------------------------------


def test_issue_order_comes_from_the_place_not_the_key_path() -> None:
    log = IssueLog("f")
    log.add("Lab.X", 1, "lab", order=place("Lab"))
    log.add("Servers[1] (B).Name", 1, "second server", order=place("Servers", 1))
    log.add("Organization.Name", 1, "organization", order=place("Organization"))
    log.add("Servers[0] (A).Name", 1, "first server", order=place("Servers", 0))
    log.add("Servers (looks like a section)", 1, "file-wide")
    assert [i.message for i in log.in_file_order()] == [
        "file-wide", "organization", "first server", "second server", "lab",
    ]


def test_bad_flags_are_reported_in_file_order_and_never_crash() -> None:
    log = IssueLog("f")
    spec = {**RELAY, "AuthMechanism": ["Zeta", "Tls", "Alpha", ["Tls"]]}
    validate_connector(spec, EX01, log, index=0)
    assert [i.value for i in log.items] == ["Zeta", "Alpha", ["Tls"]]


def test_the_operating_system_must_run_the_servers_exchange_version() -> None:
    log = IssueLog("f")
    base = {"Name": "EX01", "Role": "Mailbox", "Fqdn": "ex01.contoso.com",
            "Address": "127.0.10.1"}
    assert validate_server({**base, "Version": "15.2", "OperatingSystem": "Windows Server 2016"},
                           0, log) is None
    assert validate_server({**base, "Version": "15.1", "OperatingSystem": "Windows 2016"},
                           1, log) is None
    ok = validate_server({**base, "Version": "15.1", "OperatingSystem": "windows server 2016"},
                         2, log)
    assert ok is not None and ok.windows.build == (10, 0, 14393)
    assert [(i.key_path, i.message) for i in log.items] == [
        ("Servers[0] (EX01).OperatingSystem",
         "'Windows Server 2016' is not allowed with Version 15.2: expected 'Windows Server 2019'"
         " or 'Windows Server 2022' (Exchange's supportability matrix, exchange.md §1.7.1)"),
        ("Servers[1] (EX01).OperatingSystem",
         "'Windows 2016' is not allowed: expected one of Windows Server 2012 R2, Windows Server "
         "2016, Windows Server 2019, Windows Server 2022"),
    ]
