"""EdgeSubscriptions in the config: the EdgeSync send connectors it implies, how a
SendConnectors entry of the same name changes them, and every validation rule's message
(exchange.md §7.6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exchsim.config.implied import IMPLIED_NAME
from exchsim.config.issues import ConfigError
from exchsim.config.load import load_config, load_config_text
from exchsim.config.model import Lab
from exchsim.config.report import format_send_connectors
from exchsim.config.sendconnector import AddressSpace, SmartHostAuthMechanism

EDGE_LAB = Path(__file__).parents[2] / "configs" / "edge-lab.yaml"

BASE: dict[str, Any] = {
    "Organization": {
        "Name": "Contoso",
        "AcceptedDomains": [{"DomainName": "contoso.com", "DomainType": "Authoritative",
                             "Default": True}],
    },
    "Servers": [
        {"Name": "EX01", "Role": "Mailbox", "Fqdn": "ex01.contoso.com", "Address": "127.0.10.1"},
        {"Name": "EDGE01", "Role": "Edge", "Fqdn": "edge01.contoso.com",
         "Address": "127.0.10.10"},
    ],
}


def lab_with(subscriptions: object, **extra: Any) -> Lab:
    data: dict[str, Any] = {**BASE, "EdgeSubscriptions": subscriptions, **extra}
    return load_config_text(yaml.safe_dump(data, sort_keys=False), "edge.yaml")


def issues(subscriptions: object, **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        lab_with(subscriptions, **extra)
    return [str(i) for i in caught.value.issues]


def test_the_subscription_creates_both_edgesync_connectors() -> None:
    lab = load_config(EDGE_LAB)
    by_name = {c.name: c for c in lab.send_connectors}
    inbound = by_name["EdgeSync - Inbound to Default-First-Site-Name"]
    assert inbound.address_spaces == (AddressSpace("SMTP", "--", 1),)
    assert inbound.smart_hosts == ("--",)
    assert not inbound.uses_dns and inbound.port == 25
    assert inbound.smart_host_auth_mechanism is SmartHostAuthMechanism.EXCHANGE_SERVER
    assert inbound.source_transport_servers == ("EDGE01",)
    internet = by_name["EdgeSync - Default-First-Site-Name to Internet"]
    assert internet.address_spaces == (AddressSpace("SMTP", "*", 100),)
    assert internet.uses_dns and internet.domain_secure_enabled
    assert internet.source_transport_servers == ("EDGE01",)
    # A config without SendConnectors whose Edge makes an Internet connector gets no
    # implied sink connector (config/implied.py): the Edge is the way out.
    assert IMPLIED_NAME not in by_name
    printed = format_send_connectors(lab)
    assert "AddressSpaces               : {SMTP:--;1}" in printed
    assert "SmartHosts                  : {--}" in printed
    assert "Created by the Edge subscription of EDGE01" in printed


def test_site_and_switches() -> None:
    lab = lab_with([{"Server": "edge01", "Site": "Paris",
                     "CreateInboundSendConnector": False}])
    names = [c.name for c in lab.send_connectors]
    assert names == ["EdgeSync - Paris to Internet"]
    assert lab.edge_subscriptions[0].server == "EDGE01"
    lab = lab_with([{"Server": "EDGE01", "CreateInternetSendConnector": False}])
    names = [c.name for c in lab.send_connectors]
    assert names == ["EdgeSync - Inbound to Default-First-Site-Name", IMPLIED_NAME]


def test_a_send_connector_of_the_same_name_changes_it() -> None:
    lab = lab_with([{"Server": "EDGE01"}], SendConnectors=[
        {"Name": "edgesync - default-first-site-name to internet",
         "SmartHosts": ["[127.0.10.250]"], "DNSRoutingEnabled": False,
         "DomainSecureEnabled": False},
        {"Name": "Other", "AddressSpaces": ["fabrikam.example"]},
    ])
    by_name = {c.name: c for c in lab.send_connectors}
    internet = by_name["EdgeSync - Default-First-Site-Name to Internet"]
    assert internet.smart_hosts == ("[127.0.10.250]",) and not internet.uses_dns
    assert internet.address_spaces == (AddressSpace("SMTP", "*", 100),)
    assert internet.source_transport_servers == ("EDGE01",)
    assert [c.name for c in lab.send_connectors] == [
        "EdgeSync - Default-First-Site-Name to Internet", "Other",
        "EdgeSync - Inbound to Default-First-Site-Name"]


def test_a_change_that_breaks_a_rule_is_reported() -> None:
    found = issues([{"Server": "EDGE01"}], SendConnectors=[
        {"Name": "EdgeSync - Default-First-Site-Name to Internet",
         "SmartHosts": ["[127.0.10.250]"], "DNSRoutingEnabled": False}])
    assert any("SendConnectors[0] (EdgeSync - Default-First-Site-Name to Internet)" in i
               and "DomainSecureEnabled" in i for i in found), found


@pytest.mark.parametrize(("subscriptions", "expected"), [
    ([{"Server": "EDGE02"}],
     "edge.yaml: EdgeSubscriptions[0] (EDGE02).Server: 'EDGE02' is not allowed: "
     "not a server of this config; expected an Edge server (EDGE01); did you mean 'EDGE01'?"),
    ([{"Server": "EX01"}],
     "edge.yaml: EdgeSubscriptions[0] (EX01).Server: 'EX01' is not allowed: EX01 is "
     "a server of Role Mailbox; an Edge subscription names a server of Role Edge (EDGE01; "
     "exchange.md §7.6)"),
    ([{"Server": "EDGE01"}, {"Server": "EDGE01", "Site": "Paris"}],
     "edge.yaml: EdgeSubscriptions[1] (EDGE01).Server: 'EDGE01' is not allowed: "
     "EDGE01 already has the subscription EdgeSubscriptions[0]; an Edge server is subscribed "
     "once (exchange.md §7.6)"),
    ({"Server": "EDGE01"},
     "edge.yaml: EdgeSubscriptions: {Server: 'EDGE01'} is not allowed: "
     "expected a list of Edge subscriptions like [{Server: EDGE01, Site: "
     "Default-First-Site-Name}]"),
])
def test_bad_subscriptions(subscriptions: object, expected: str) -> None:
    assert expected in issues(subscriptions)


def test_bad_fields_name_the_key() -> None:
    found = issues([{"Server": "EDGE01", "Site": "two words"}])
    assert any("EdgeSubscriptions[0] (EDGE01).Site" in i for i in found), found
    found = issues([{"Server": "EDGE01", "CreateInternetSendconnector": True}])
    assert any("CreateInternetSendconnector" in i and "CreateInternetSendConnector" in i
               for i in found), found
    found = issues([{"Site": "Paris"}])
    assert any("EdgeSubscriptions[0].Server" in i for i in found), found


def test_no_mailbox_server() -> None:
    data = {**BASE, "Servers": [BASE["Servers"][1]], "EdgeSubscriptions": [{"Server": "EDGE01"}]}
    with pytest.raises(ConfigError) as caught:
        load_config_text(yaml.safe_dump(data), "edge.yaml")
    assert any("the config has no Mailbox server" in str(i) for i in caught.value.issues)


def test_dns_wildcard_mx_is_allowed() -> None:
    lab = lab_with([{"Server": "EDGE01"}], Dns={"MX": {"*": [
        {"Preference": 10, "NameExchange": "internet.lab.example", "Address": "127.0.10.250"}]}})
    assert lab.dns.wildcard_mx()[0].name_exchange == "internet.lab.example"


@pytest.mark.parametrize(("connector", "expected"), [
    ({"Name": "Out", "AddressSpaces": ["fabrikam.example"], "SmartHosts": ["--"],
      "DNSRoutingEnabled": False, "SourceTransportServers": ["EX01"]},
     "edge.yaml: SendConnectors[0] (Out).SmartHosts: '--' (the site's Mailbox servers) is not "
     "allowed here: it is EdgeSync's (exchange.md §7.6): expected it only on a connector whose "
     "SourceTransportServers are Edge servers"),
    ({"Name": "Org", "AddressSpaces": ["SMTP:--;1"], "SmartHosts": ["[127.0.10.250]"],
      "DNSRoutingEnabled": False},
     "edge.yaml: SendConnectors[0] (Org).AddressSpaces: '--' (the organization's domains) is "
     "not allowed here"),
    ({"Name": "Mixed", "AddressSpaces": ["SMTP:--;1"], "SmartHosts": ["--"],
      "DNSRoutingEnabled": False, "SourceTransportServers": ["EDGE01", "EX01"]},
     "edge.yaml: SendConnectors[0] (Mixed).SmartHosts: '--' (the site's Mailbox servers) is "
     "not allowed here"),
    ({"Name": "EdgeSync - Inbound to Default-First-Site-Name",
      "SmartHosts": ["--", "[127.0.10.250]"]},
     "edge.yaml: SendConnectors[0] (EdgeSync - Inbound to Default-First-Site-Name).SmartHosts: "
     "'--' (the site's Mailbox servers) is not allowed beside other smart hosts: expected it "
     "alone"),
])
def test_the_edgesync_values_belong_to_edge_connectors(connector: dict[str, Any],
                                                       expected: str) -> None:
    """``--`` routes nothing and resolves to no host outside an Edge's EdgeSync connector: a
    connector of Mailbox servers with it is refused, not left to fail each message."""
    found = issues([{"Server": "EDGE01"}], SendConnectors=[connector])
    assert any(i.startswith(expected) for i in found), found
