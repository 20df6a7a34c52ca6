"""``exchsim check`` output: connectors like Get-ReceiveConnector | Format-List, and issues."""

from __future__ import annotations

import re

import pytest

from exchsim.config.load import ConfigError, Issue, load_config_text
from exchsim.config.model import ReceiveConnector
from exchsim.config.report import format_connectors, format_issues
from tests.unit.config.test_load import EXAMPLE, config


def blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.split("\n\n")]


LINE = re.compile(r"^(?P<key>[A-Za-z0-9]+) +:(?: (?P<value>.*))?$")


def fields(block: list[str]) -> dict[str, str]:
    """``Key    : Value`` lines (an empty value leaves no trailing space)."""
    out: dict[str, str] = {}
    for line in block:
        match = LINE.match(line)
        assert match, f"not a Format-List line: {line!r}"
        out[match["key"]] = match["value"] or ""
    return out


@pytest.fixture(scope="module")
def example_text() -> str:
    return format_connectors(load_config_text(EXAMPLE, "example.yaml"))


def test_one_block_per_connector_in_lab_order(example_text: str) -> None:
    got = [fields(b)["Identity"] for b in blocks(example_text)]
    assert got == [
        "EX01\\Default Frontend EX01",
        "EX01\\Outbound Proxy Frontend EX01",
        "EX01\\Client Frontend EX01",
        "EX01\\Default EX01",
        "EX01\\Client Proxy EX01",
        "EX01\\Mailbox Delivery EX01",
        "EX01\\SMTP Relay EX01",
        "EX01\\Anonymous Relay EX01",
    ]
    assert not example_text.endswith("\n")
    assert "\n\n\n" not in example_text


def test_default_frontend_block(example_text: str) -> None:
    block = blocks(example_text)[0]
    got = fields(block)
    expected = {
        "Identity": "EX01\\Default Frontend EX01",
        "Name": "Default Frontend EX01",
        "Server": "EX01",
        "TransportRole": "FrontendTransport",
        "Usage": "",
        "Enabled": "True",
        "Bindings": "{0.0.0.0:25, [::]:25}",
        "AuthMechanism": "Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer",
        "PermissionGroups": "AnonymousUsers, ExchangeServers, ExchangeLegacyServers",
        "Fqdn": "ex01.contoso.com",
        "Banner": "",
        "DomainSecureEnabled": "True",
        "MaxMessageSize": "36 MB (37,748,736 bytes)",
        "MaxHeaderSize": "256 KB (262,144 bytes)",
        "MaxRecipientsPerMessage": "200",
        "MaxHopCount": "60",
        "MaxLocalHopCount": "5",
        "MaxInboundConnection": "5000",
        "MaxInboundConnectionPerSource": "20",
        "ConnectionTimeout": "00:10:00",
        "ConnectionInactivityTimeout": "00:05:00",
        "TarpitInterval": "00:00:05",
        "MessageRateLimit": "Unlimited",
        "MessageRateSource": "IPAddress",
        "ProtocolLoggingLevel": "Verbose",
        "SizeEnabled": "Enabled",
        "ChunkingEnabled": "True",
        "LongAddressesEnabled": "False",
    }
    assert {key: got[key] for key in expected} == expected
    assert got["RemoteIPRanges"].startswith("{0.0.0.0-255.255.255.255, ")
    assert got["RemoteIPRanges"].endswith("}")
    # Every parameter of the model is shown, Identity first, in the model's order.
    aliases = [info.alias or name for name, info in ReceiveConnector.model_fields.items()]
    assert list(got) == ["Identity", *aliases]


def test_key_column_is_padded_to_a_common_width(example_text: str) -> None:
    for block in blocks(example_text):
        columns = {line.index(" :") for line in block}
        assert len(columns) == 1
        width = max(len(line.partition(" :")[0].rstrip()) for line in block)
        assert columns == {width}
        assert all(line == line.rstrip() for line in block)
    first = blocks(example_text)[0][0]
    assert first.startswith("Identity ") and first.endswith(" : EX01\\Default Frontend EX01")


def test_custom_connector_values(example_text: str) -> None:
    relay = fields(blocks(example_text)[6])
    assert relay["AuthMechanism"] == "Tls, ExternalAuthoritative"
    assert relay["PermissionGroups"] == "ExchangeServers"
    assert relay["MaxMessageSize"] == "1 MB (1,048,576 bytes)"
    assert relay["RemoteIPRanges"] == "{127.0.21.75}"
    assert relay["Usage"] == "Custom"
    # No Fqdn on the connector: the effective one is the server's.
    assert relay["Fqdn"] == "ex01.contoso.com"
    anonymous = fields(blocks(example_text)[7])
    assert anonymous["Banner"] == "220 relay ready"


def test_empty_flag_sets_show_none() -> None:
    lab = load_config_text(config(
        '  - {Name: R, Server: EX01, Bindings: ["0.0.0.0:2600"], Usage: Custom, '
        "MaxInboundConnection: unlimited}"
    ))
    got = fields(blocks(format_connectors(lab))[-1])
    assert got["PermissionGroups"] == "None"
    assert got["MaxInboundConnection"] == "Unlimited"


def test_format_issues_lists_every_issue() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(config(
            '  - {Name: R, Server: EX02, Bindings: ["0.0.0.0:2600"], Banner: "hi"}'
        ), "configs/bad.yaml")
    text = format_issues(info.value)
    lines = text.splitlines()
    assert lines[0] == "exchsim: configs/bad.yaml: 1 problem"
    assert lines[1:] == [f"  {issue}" for issue in info.value.issues]
    assert "configs/bad.yaml: ReceiveConnectors[0] (R).Server: 'EX02'" in text


def test_format_issues_counts() -> None:
    err = ConfigError([Issue("a.yaml", "X", 1, "bad"), Issue("a.yaml", "Y", 2, "worse")])
    assert format_issues(err).splitlines() == [
        "exchsim: a.yaml: 2 problems",
        "  a.yaml: X: bad",
        "  a.yaml: Y: worse",
    ]


# --- the report comes from the model's fields, not from a table ---------------------------------


def test_a_new_parameter_prints_from_its_type_alone() -> None:
    import datetime
    from typing import Annotated

    from pydantic import Field

    from exchsim.config.model import MB, Bounds, ByteSize, Limit, TimeSpan, out_of_bounds
    from exchsim.config.report import connector_lines

    class Extended(ReceiveConnector):
        max_widget_size: Annotated[ByteSize, Bounds(1024, 4 * MB)] = Field(
            alias="MaxWidgetSize", default=2 * MB
        )
        max_widgets: Limit = Field(alias="MaxWidgets", default=None)
        widget_timeout: TimeSpan = Field(
            alias="WidgetTimeout", default=datetime.timedelta(hours=25)
        )

    connector = Extended.model_validate({"Name": "W", "Server": "EX01"})
    lines = dict(connector_lines(connector, "ex01.contoso.com"))
    assert lines["MaxWidgetSize"] == "2 MB (2,097,152 bytes)"
    assert lines["MaxWidgets"] == "Unlimited"
    assert lines["WidgetTimeout"] == "1.01:00:00"
    assert lines["Fqdn"] == "ex01.contoso.com"

    too_big = Extended.model_validate({"Name": "W", "Server": "EX01", "MaxWidgetSize": "5MB"})
    assert [(name, value) for name, value, _ in out_of_bounds(too_big)] == [
        ("max_widget_size", 5 * MB)
    ]
