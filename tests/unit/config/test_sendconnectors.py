"""SendConnectors and Dns in the config: parsing, defaults, every validation rule with its exact
message (exchange.md §8.2, §4.3)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import yaml

from exchsim.config.implied import IMPLIED_COMMENT, IMPLIED_NAME
from exchsim.config.issues import ConfigError
from exchsim.config.load import load_config_text
from exchsim.config.model import Lab, ProtocolLoggingLevel
from exchsim.config.report import format_send_connectors
from exchsim.config.sendconnector import (
    AddressSpace,
    Endpoint,
    SendUsage,
    SmartHostAuthMechanism,
    TlsAuthLevel,
    parse_address_space,
)

BASE: dict[str, Any] = {
    "Organization": {
        "Name": "Contoso",
        "AcceptedDomains": [{"DomainName": "contoso.com", "DomainType": "Authoritative",
                             "Default": True}],
    },
    "Servers": [
        {"Name": "EX01", "Role": "Mailbox", "Fqdn": "ex01.contoso.com", "Address": "127.0.10.1"},
        {"Name": "EX02", "Role": "Mailbox", "Fqdn": "ex02.contoso.com", "Address": "127.0.10.2"},
        {"Name": "EDGE1", "Role": "Edge", "Fqdn": "edge1.contoso.com", "Address": "127.0.10.9"},
    ],
}


def lab_with(connectors: list[dict[str, Any]] | None = None,
             dns: dict[str, Any] | None = None) -> Lab:
    data = dict(BASE)
    if connectors is not None:
        data["SendConnectors"] = connectors
    if dns is not None:
        data["Dns"] = dns
    return load_config_text(yaml.safe_dump(data, sort_keys=False), "sc.yaml")


def issues(connectors: list[dict[str, Any]] | None = None,
           dns: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        lab_with(connectors, dns)
    return [str(i) for i in caught.value.issues]


def one(**fields: Any) -> list[str]:
    return issues([{"Name": "Out", "AddressSpaces": ["*"], **fields}])


def test_no_send_connector_section_means_exchsims_implied_connector_to_the_sink() -> None:
    lab = lab_with()
    (implied,) = lab.send_connectors
    assert implied.name == IMPLIED_NAME and implied.comment == IMPLIED_COMMENT
    assert implied.smart_hosts == ("[127.0.10.250]",) and implied.port == 25
    assert [s.domain for s in implied.address_spaces] == ["*"]
    assert lab.dns.mx == {} and lab.dns.a == {}


def test_an_empty_send_connector_section_means_none_as_after_setup() -> None:
    assert lab_with([]).send_connectors == ()


def test_defaults_are_new_sendconnectors() -> None:
    (c,) = lab_with([{"Name": "To Internet", "AddressSpaces": "*"}]).send_connectors
    assert c.address_spaces == (AddressSpace("SMTP", "*", 1),)
    assert c.usage is SendUsage.CUSTOM
    assert c.enabled is True
    assert c.dns_routing_enabled is None and c.uses_dns is True
    assert c.smart_hosts == ()
    assert c.port == 25
    assert c.source_transport_servers == ()
    assert c.fqdn is None
    assert c.require_tls is False and c.ignore_starttls is False
    assert c.tls_auth_level is None and c.tls_domain is None and c.tls_certificate_name is None
    assert c.domain_secure_enabled is False and c.frontend_proxy_enabled is False
    assert c.smart_host_auth_mechanism is SmartHostAuthMechanism.NONE
    assert c.authentication_credential is None
    assert c.max_message_size == 25 * 1024 * 1024  # exchange.md §9.6
    assert c.protocol_logging_level is ProtocolLoggingLevel.NONE
    assert c.connection_inactivity_timeout == datetime.timedelta(minutes=10)


@pytest.mark.parametrize(("text", "space"), [
    ("SMTP:*.contoso.com;1", AddressSpace("SMTP", "*.contoso.com", 1)),
    ("smtp:Contoso.COM;7", AddressSpace("SMTP", "contoso.com", 7)),
    ("*.contoso.com", AddressSpace("SMTP", "*.contoso.com", 1)),
    ("partner.example;100", AddressSpace("SMTP", "partner.example", 100)),
    ("*", AddressSpace("SMTP", "*", 1)),
    ("SMTP:*;3", AddressSpace("SMTP", "*", 3)),
])
def test_address_space_forms(text: str, space: AddressSpace) -> None:
    assert parse_address_space(text) == space
    assert space.format() == f"SMTP:{space.domain};{space.cost}"


@pytest.mark.parametrize("text", ["X400:c=US;1", "*.contoso.com;0", "*.contoso.com;101",
                                  "contoso.com;x", "con toso.com", "*contoso.com", "**"])
def test_bad_address_spaces_name_key_value_and_syntax(text: str) -> None:
    (issue,) = one(AddressSpaces=[text])
    assert issue.startswith("sc.yaml: SendConnectors[0] (Out).AddressSpaces[0]: ")
    assert repr(text) in issue
    assert "SMTP:*.contoso.com;1" in issue and "exchange.md §8.2" in issue


def test_every_parameter_parses_with_exchange_spelling() -> None:
    (c,) = lab_with([{
        "Name": "Smart", "AddressSpaces": "SMTP:*.fabrikam.example;5, contoso.org",
        "Usage": "internet", "Enabled": "$false", "SmartHosts": ["Relay.Lab.Example", "127.0.10.70"],
        "DNSRoutingEnabled": False, "Port": 2525, "SourceTransportServers": ["ex01", "EDGE1"],
        "Fqdn": "out.contoso.com", "ForceHELO": True, "RequireTLS": True,
        "TlsAuthLevel": "domainvalidation", "TlsDomain": "relay.lab.example",
        "TlsCertificateName": "<I>CN=Lab CA<S>CN=out.contoso.com",
        "FrontendProxyEnabled": True, "SmartHostAuthMechanism": "BasicAuth",
        "AuthenticationCredential": "relay:S3cret!", "MaxMessageSize": "Unlimited",
        "ProtocolLoggingLevel": "verbose", "ConnectionInactivityTimeOut": "00:02:00",
    }], {"A": {"relay.lab.example": "127.0.10.71:2525"}}).send_connectors
    assert [s.format() for s in c.address_spaces] == ["SMTP:*.fabrikam.example;5",
                                                      "SMTP:contoso.org;1"]
    assert c.usage is SendUsage.INTERNET and c.enabled is False
    assert c.smart_hosts == ("relay.lab.example", "[127.0.10.70]")
    assert c.uses_dns is False and c.port == 2525
    assert c.tls_auth_level is TlsAuthLevel.DOMAIN_VALIDATION
    assert c.authentication_credential is not None
    assert c.authentication_credential.user_name == "relay"
    assert c.authentication_credential.password == "S3cret!"
    assert c.max_message_size is None
    assert c.connection_inactivity_timeout == datetime.timedelta(minutes=2)


RULES: list[tuple[dict[str, Any], str]] = [
    ({"SmartHosts": ["[127.0.10.70]"], "DNSRoutingEnabled": True},
     "SendConnectors[0] (Out).DNSRoutingEnabled: true is not allowed with SmartHosts: a connector "
     "routes through DNS or through smart hosts, not both; set DNSRoutingEnabled to false or "
     "remove SmartHosts (exchange.md §8.2)"),
    ({"DNSRoutingEnabled": False},
     "SendConnectors[0] (Out).SmartHosts: at least one smart host is required when "
     "DNSRoutingEnabled is false (exchange.md §8.2)"),
    ({"Fqdn": "out_1.contoso.com"},
     "SendConnectors[0] (Out).Fqdn: 'out_1.contoso.com' is not allowed: expected a host name like "
     "mail.contoso.com, the name the connector says in EHLO (exchange.md §4.3)"),
    ({"RequireTLS": True, "TlsAuthLevel": "DomainValidation", "TlsDomain": "bad domain"},
     "SendConnectors[0] (Out).TlsDomain: 'bad domain' is not allowed: expected a domain like "
     "partner.example or *.partner.example (exchange.md §4.3)"),
    ({"RequireTLS": True, "TlsAuthLevel": "CertificateValidation", "TlsDomain": "p.example"},
     "SendConnectors[0] (Out).TlsDomain: TlsDomain can only be set with TlsAuthLevel "
     "DomainValidation (exchange.md §4.3)"),
    ({"TlsDomain": "p.example"},
     "SendConnectors[0] (Out).TlsDomain: TlsDomain can only be set with TlsAuthLevel "
     "DomainValidation (exchange.md §4.3)"),
    ({"SmartHosts": ["[127.0.10.70]"], "RequireTLS": True, "TlsAuthLevel": "DomainValidation"},
     "SendConnectors[0] (Out).TlsDomain: TlsDomain is required with TlsAuthLevel "
     "DomainValidation on a connector with SmartHosts (exchange.md §4.3)"),
    ({"IgnoreSTARTTLS": True, "RequireTLS": True},
     "SendConnectors[0] (Out).RequireTLS: true is not allowed with IgnoreSTARTTLS true: a "
     "connector that ignores STARTTLS cannot require TLS (exchange.md §4.3)"),
    ({"IgnoreSTARTTLS": True, "TlsAuthLevel": "EncryptionOnly"},
     "SendConnectors[0] (Out).TlsAuthLevel: 'EncryptionOnly' is not allowed with IgnoreSTARTTLS "
     "true (exchange.md §4.3)"),
    ({"TlsAuthLevel": "CertificateValidation"},
     "SendConnectors[0] (Out).TlsAuthLevel: 'CertificateValidation' is not allowed without "
     "RequireTLS true: TlsAuthLevel needs RequireTLS (exchange.md §4.3)"),
    ({"SmartHosts": ["[127.0.10.70]"], "DomainSecureEnabled": True},
     "SendConnectors[0] (Out).DomainSecureEnabled: true is not allowed on a smart-host connector: "
     "Domain Security needs DNSRoutingEnabled true (exchange.md §4.3)"),
    ({"DomainSecureEnabled": True, "IgnoreSTARTTLS": True},
     "SendConnectors[0] (Out).DomainSecureEnabled: true is not allowed with IgnoreSTARTTLS true "
     "(exchange.md §4.3)"),
    ({"SmartHosts": ["[127.0.10.70]"], "SmartHostAuthMechanism": "BasicAuth"},
     "SendConnectors[0] (Out).AuthenticationCredential: AuthenticationCredential (UserName and "
     "Password) is required with SmartHostAuthMechanism BasicAuth (exchange.md §8.2)"),
    ({"SmartHosts": ["[127.0.10.70]"], "SmartHostAuthMechanism": "BasicAuthRequireTLS"},
     "SendConnectors[0] (Out).AuthenticationCredential: AuthenticationCredential (UserName and "
     "Password) is required with SmartHostAuthMechanism BasicAuthRequireTLS (exchange.md §8.2)"),
    ({"SmartHostAuthMechanism": "ExchangeServer"},
     "SendConnectors[0] (Out).SmartHostAuthMechanism: 'ExchangeServer' is not allowed without "
     "SmartHosts: it is how the connector authenticates to its smart hosts; expected None "
     "(exchange.md §8.2)"),
    ({"SourceTransportServers": ["EX09"]},
     "SendConnectors[0] (Out).SourceTransportServers: 'EX09' is not allowed: not a server of this "
     "config; expected one of EX01, EX02, EDGE1 (Mailbox or Edge servers, exchange.md §8.2)"),
    ({"SmartHosts": ["relay.lab.example"]},
     "SendConnectors[0] (Out).SmartHosts: 'relay.lab.example' is not allowed: the lab's DNS has no "
     "A record for it; add it under Dns.A or write the smart host as [address]"),
]


@pytest.mark.parametrize(("fields", "message"), RULES, ids=[m.split(":")[1][:60] for _, m in RULES])
def test_each_rule_has_its_exact_message(fields: dict[str, Any], message: str) -> None:
    assert one(**fields) == [f"sc.yaml: {message}"]


def test_bad_values_name_the_key_and_what_is_allowed() -> None:
    found = one(TlsAuthLevel="Strict", Port=0, SmartHostAuthMechanism="Kerberos")
    assert any("SendConnectors[0] (Out).TlsAuthLevel" in i and "'Strict'" in i
               and "DomainValidation" in i for i in found), found
    assert any("SendConnectors[0] (Out).Port" in i and "1" in i for i in found), found
    assert any("SmartHostAuthMechanism" in i and "BasicAuthRequireTLS" in i for i in found), found


def test_names_are_unique_in_the_organization() -> None:
    found = issues([{"Name": "Out", "AddressSpaces": "*"},
                    {"Name": "OUT", "AddressSpaces": "contoso.org"}])
    assert found == ["sc.yaml: SendConnectors[1] (OUT).Name: 'OUT' is already the name of "
                     "SendConnectors[0]: send connector names must be unique in the organization"]


def test_unknown_keys_and_missing_address_spaces_are_reported() -> None:
    found = issues([{"Name": "Out", "SmartHost": ["x"]}])
    assert any("SendConnectors[0] (Out).SmartHost" in i and "SmartHosts" in i for i in found)
    assert any("SendConnectors[0] (Out).AddressSpaces" in i for i in found), found


def test_dns_map_parses_mx_and_a() -> None:
    lab = lab_with(dns={
        "MX": {"partner.example": [
            {"Preference": 20, "NameExchange": "mx2.partner.example", "Address": "127.0.10.61"},
            {"Preference": 10, "NameExchange": "mx1.partner.example"}]},
        "A": {"mx1.partner.example": "127.0.10.60:2525", "v6.lab.example": "[::1]:25"},
    })
    records = lab.dns.mx_of("Partner.Example.")
    assert [r.name_exchange for r in records] == ["mx1.partner.example", "mx2.partner.example"]
    assert records[1].address == Endpoint("127.0.10.61", None)
    assert lab.dns.address_of("MX1.partner.example") == Endpoint("127.0.10.60", 2525)
    assert lab.dns.address_of("v6.lab.example") == Endpoint("::1", 25)
    assert lab.dns.mx_of("other.example") == ()


@pytest.mark.parametrize("address", ["192.0.2.10", "10.0.0.1:25", "8.8.8.8", "[2001:db8::1]:25"])
def test_dns_addresses_must_stay_in_the_lab(address: str) -> None:
    found = issues(dns={"A": {"relay.lab.example": address}})
    assert len(found) == 1, found
    assert found[0].startswith("sc.yaml: Dns.A.relay.lab.example: ")
    assert "is not a loopback address" in found[0]
    assert "the lab never leaves 127.0.0.0/8" in found[0]


def test_dns_rejects_bad_ports_names_and_hosts_without_address() -> None:
    assert "port 70000 is not allowed" in issues(dns={"A": {"h.lab.example": "127.0.0.5:70000"}})[0]
    assert issues(dns={"MX": {"partner.example": [{"NameExchange": "mx.partner.example"}]}}) == [
        "sc.yaml: Dns.MX.partner.example[0].NameExchange: 'mx.partner.example' has no address: "
        "give the record an Address or add the host under Dns.A"]
    assert issues(dns={"A": {"bad_host": "127.0.0.5"}}) == [
        "sc.yaml: Dns.A.bad_host: 'bad_host' is not allowed: expected a host name like "
        "smarthost.lab.example"]


def test_dns_a_record_satisfies_a_smart_host() -> None:
    (c,) = lab_with([{"Name": "Out", "AddressSpaces": "*", "SmartHosts": "relay.lab.example"}],
                    {"A": {"relay.lab.example": "127.0.10.71"}}).send_connectors
    assert c.smart_hosts == ("relay.lab.example",) and c.uses_dns is False


def test_unknown_top_level_key_lists_the_new_sections() -> None:
    data = dict(BASE)
    data["SendConnector"] = []
    with pytest.raises(ConfigError) as caught:
        load_config_text(yaml.safe_dump(data), "sc.yaml")
    (issue,) = caught.value.issues
    assert "SendConnectors" in str(issue) and "Dns" in str(issue)


def test_check_prints_like_get_sendconnector_format_list() -> None:
    lab = lab_with([{"Name": "Smart", "AddressSpaces": "*.fabrikam.example;5",
                     "SmartHosts": "127.0.10.70", "SmartHostAuthMechanism": "BasicAuth",
                     "AuthenticationCredential": {"UserName": "relay", "Password": "S3cret!"}}])
    text = format_send_connectors(lab)
    lines = text.splitlines()
    keys = [line.split(" : ")[0].rstrip() for line in lines]
    assert keys == sorted(keys, key=str.lower)
    assert "AddressSpaces               : {SMTP:*.fabrikam.example;5}" in lines
    assert "SmartHosts                  : {[127.0.10.70]}" in lines
    assert "DNSRoutingEnabled           : False" in lines
    assert "SourceTransportServers      : {EX01, EX02}" in lines
    assert "MaxMessageSize              : 25 MB (26,214,400 bytes)" in lines
    assert "Identity                    : Smart" in lines
    assert "AuthenticationCredential    : System.Management.Automation.PSCredential" in lines
    assert "S3cret!" not in text
    assert not any(line.startswith("Usage") for line in lines)


def test_check_prints_the_implied_connector_as_exchsims_own() -> None:
    lines = format_send_connectors(lab_with()).splitlines()
    assert "Identity                    : exchsim Internet Sink" in lines
    assert "SmartHosts                  : {[127.0.10.250]}" in lines
    comment = next(line for line in lines if line.startswith("Comment"))
    assert "exchsim's own, not an Exchange object" in comment
