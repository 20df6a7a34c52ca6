"""policy/outbound.py: routing to a NextHop, destinations from the lab's Dns map, and the
judgement of a remote certificate per TlsAuthLevel (exchange.md §8.2, §4.3)."""

from __future__ import annotations

from typing import Any

import yaml

from exchsim.config.load import load_config_text
from exchsim.config.model import Lab
from exchsim.config.sendconnector import DnsMap, SendConnector, TlsAuthLevel
from exchsim.policy.nexthop import DeliveryType
from exchsim.policy.outbound import (
    Destination,
    destinations,
    judge_remote_certificate,
    parse_xproxyto,
    route_external,
    xproxyto_command,
)
from exchsim.tls.validation import ChainStatus

BASE: dict[str, Any] = {
    "Organization": {"Name": "Contoso", "AcceptedDomains": [
        {"DomainName": "contoso.com", "DomainType": "Authoritative", "Default": True}]},
    "Servers": [
        {"Name": "EX01", "Role": "Mailbox", "Fqdn": "ex01.contoso.com", "Address": "127.0.10.1"},
        {"Name": "EX02", "Role": "Mailbox", "Fqdn": "ex02.contoso.com", "Address": "127.0.10.2"},
    ],
}


def lab(connectors: list[dict[str, Any]], dns: dict[str, Any] | None = None) -> Lab:
    data = dict(BASE, SendConnectors=connectors)
    if dns is not None:
        data["Dns"] = dns
    return load_config_text(yaml.safe_dump(data, sort_keys=False), "t.yaml")


def sc(**fields: Any) -> SendConnector:
    return SendConnector.model_validate({"Name": "C", "AddressSpaces": ["*"], **fields})


def test_next_hops_by_kind_of_connector() -> None:
    the_lab = lab([
        {"Name": "Dns", "AddressSpaces": ["partner.example"], "SourceTransportServers": ["EX01"]},
        {"Name": "Smart", "AddressSpaces": ["*"], "SmartHosts": ["[127.0.10.70]", "sh.example"],
         "SourceTransportServers": ["EX01"]},
        {"Name": "Far", "AddressSpaces": ["far.example"], "SourceTransportServers": ["EX02"]},
    ], {"A": {"sh.example": "127.0.10.71"}})
    dns = route_external(the_lab, "EX01", "partner.example", 10)
    assert dns.next_hop.delivery_type is DeliveryType.DNS_CONNECTOR_DELIVERY
    assert (dns.next_hop.domain, dns.next_hop.connector) == ("partner.example", "Dns")
    smart = route_external(the_lab, "EX01", "fabrikam.example", 10)
    assert smart.next_hop.delivery_type is DeliveryType.SMART_HOST_CONNECTOR_DELIVERY
    assert smart.next_hop.domain == "[127.0.10.70],sh.example"
    far = route_external(the_lab, "EX01", "far.example", 10)
    assert far.next_hop.delivery_type is DeliveryType.SMTP_RELAY_TO_CONNECTOR_SOURCE_SERVERS
    assert far.relay_servers == ("EX02",)
    assert route_external(the_lab, "EX02", "far.example", 10).relay_servers == ()


def test_no_connector_is_unreachable() -> None:
    found = route_external(lab([]), "EX01", "fabrikam.example", 10)
    assert found.connector is None
    assert found.next_hop.delivery_type is DeliveryType.UNREACHABLE
    assert found.next_hop.domain == "unreachable domain"


def test_mx_by_preference_with_record_ports_and_the_connector_port() -> None:
    # A map the loader would refuse (lost.partner.example has no address): the DNS may still
    # not answer for a host at delivery time.
    dns = DnsMap.model_validate({"MX": {"partner.example": [
        {"Preference": 20, "NameExchange": "b.partner.example"},
        {"Preference": 10, "NameExchange": "a.partner.example", "Address": "127.0.10.60:2526"},
        {"Preference": 30, "NameExchange": "lost.partner.example"},
    ]}, "A": {"b.partner.example": "127.0.10.61"}})
    hosts, missing = destinations(sc(Port=587), "partner.example", dns)
    assert hosts == [Destination("a.partner.example", "127.0.10.60", 2526),
                     Destination("b.partner.example", "127.0.10.61", 587)]
    assert missing == "lost.partner.example"


def test_implicit_mx_and_unknown_domains() -> None:
    the_lab = lab([], {"A": {"fabrikam.example": "127.0.10.80"}})
    assert destinations(sc(), "fabrikam.example", the_lab.dns) == (
        [Destination("fabrikam.example", "127.0.10.80", 25)], None)
    assert destinations(sc(), "nowhere.example", the_lab.dns) == ([], "nowhere.example")


def test_smart_hosts_in_order() -> None:
    the_lab = lab([], {"A": {"sh.example": "127.0.10.71:2525"}})
    connector = sc(SmartHosts=["sh.example", "[127.0.10.70]"], Port=26)
    assert destinations(connector, "x.example", the_lab.dns)[0] == [
        Destination("sh.example", "127.0.10.71", 2525), Destination(None, "127.0.10.70", 26)]


def test_certificate_judgement_per_tls_auth_level() -> None:
    valid, untrusted = ChainStatus.VALID, ChainStatus.UNTRUSTED_ROOT
    names = ("mail.partner.example",)
    encryption = sc(RequireTLS=True, TlsAuthLevel="EncryptionOnly")
    assert judge_remote_certificate(encryption, "partner.example", untrusted, names,
                                    domain_secure=False) is None
    chain = sc(RequireTLS=True, TlsAuthLevel="CertificateValidation")
    assert judge_remote_certificate(chain, "partner.example", valid, (),
                                    domain_secure=False) is None
    assert "UntrustedRoot" in (judge_remote_certificate(
        chain, "partner.example", untrusted, names, domain_secure=False) or "")
    assert "no certificate" in (judge_remote_certificate(
        chain, "partner.example", None, (), domain_secure=False) or "")
    domain = sc(RequireTLS=True, TlsAuthLevel="DomainValidation")
    assert judge_remote_certificate(domain, "mail.partner.example", valid, names,
                                    domain_secure=False) is None
    assert "expected domain partner.example" in (judge_remote_certificate(
        domain, "partner.example", valid, names, domain_secure=False) or "")
    wild = sc(RequireTLS=True, TlsAuthLevel="DomainValidation", TlsDomain="*.partner.example")
    assert judge_remote_certificate(wild, "x.example", valid, ("*.partner.example",),
                                    domain_secure=False) is None
    # Domain Security: trusted and naming the recipient domain whatever TlsAuthLevel says.
    assert judge_remote_certificate(sc(), "partner.example", valid, ("partner.example",),
                                    domain_secure=True) is None
    assert judge_remote_certificate(sc(), "partner.example", valid, ("other.example",),
                                    domain_secure=True) is not None


def test_every_route_but_an_ndr_carries_its_next_hop() -> None:
    from exchsim.transport.hub import categorize

    the_lab = load_config_text(yaml.safe_dump(dict(
        BASE, Organization=dict(BASE["Organization"], Mailboxes=[
            {"PrimarySmtpAddress": "alice@contoso.com", "Server": "EX02"}]),
        SendConnectors=[{"Name": "Out", "AddressSpaces": ["*"]}]), sort_keys=False), "t.yaml")
    mailbox = categorize(the_lab, "Alice@contoso.com", "EX01", 10)
    assert mailbox.kind == "mailbox" and mailbox.server == "EX02"
    assert mailbox.next_hop is not None
    assert mailbox.next_hop.delivery_type is DeliveryType.SMTP_DELIVERY_TO_MAILBOX
    assert mailbox.next_hop.domain.startswith("mailbox database ")
    assert categorize(the_lab, "nobody@contoso.com", "EX01", 10).next_hop is None
    out = categorize(the_lab, "x@fabrikam.example", "EX01", 10)
    assert (out.kind, out.connector) == ("connector", "Out")
    assert out.next_hop is not None and out.next_hop.domain == "fabrikam.example"


def test_xproxyto_carries_the_destinations_and_the_connector_settings() -> None:
    from exchsim.smtp.wire import parse_keyword_args

    connector = sc(Name="To Partner", RequireTLS=True, TlsAuthLevel="DomainValidation",
                   TlsDomain="mail.partner.example", Fqdn="out.contoso.com", ForceHELO=True,
                   TlsCertificateName="<I>CN=Lab CA<S>CN=ex01.contoso.com")
    hosts = [Destination("mx1.partner.example", "127.0.10.61", 25),
             Destination(None, "127.0.10.70", 2525)]
    line = xproxyto_command(connector, "partner.example", hosts, "abc")
    assert line.startswith("XPROXYTO DESTINATIONS=mx1.partner.example[127.0.10.61]:25,"
                           "[127.0.10.70]:2525 PORT=25 NEXTHOPDOMAIN=partner.example ")
    assert line.endswith(" LAST=True") and " " not in line.split("CERTSUBJECT=")[1].split()[0]
    parsed = parse_xproxyto(parse_keyword_args(line.partition(" ")[2]))
    assert parsed is not None
    assert parsed.destinations == tuple(hosts) and parsed.domain == "partner.example"
    rebuilt = parsed.as_connector()
    assert (rebuilt.name, rebuilt.require_tls, rebuilt.tls_auth_level, rebuilt.tls_domain,
            rebuilt.fqdn, rebuilt.force_helo, rebuilt.tls_certificate_name) == (
        "To Partner", True, TlsAuthLevel.DOMAIN_VALIDATION, "mail.partner.example",
        "out.contoso.com", True, "<I>CN=Lab CA<S>CN=ex01.contoso.com")


def test_xproxyto_refuses_what_it_cannot_use() -> None:
    for bad in ({}, {"DESTINATIONS": "mx.example:25"}, {"DESTINATIONS": "[10.0.0.1]:25"},
                {"DESTINATIONS": "[127.0.0.1]:0"},
                {"DESTINATIONS": "[127.0.0.1]:25", "TLSAUTHLEVEL": "Whatever"}):
        assert parse_xproxyto(bad) is None, bad
