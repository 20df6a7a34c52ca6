"""Routing with an Edge subscription (exchange.md §7.6): on the Edge the organization's domains
go through EdgeSync - Inbound, the Internet through the Edge's own connectors; on a Mailbox
server the Edge's Internet connector is SmtpRelayWithinAdSiteToEdge; who trusts whose
certificate."""

from __future__ import annotations

from pathlib import Path

from exchsim.config.load import load_config, load_config_text
from exchsim.policy.edgetrust import direct_trust_peers, known_servers
from exchsim.policy.nexthop import DeliveryType, NextHop
from exchsim.transport.hub import Route, categorize

EDGE_LAB = Path(__file__).parents[2] / "configs" / "edge-lab.yaml"
INBOUND = "EdgeSync - Inbound to Default-First-Site-Name"
INTERNET = "EdgeSync - Default-First-Site-Name to Internet"


def test_mailbox_server_relays_internet_mail_to_the_edge() -> None:
    lab = load_config(EDGE_LAB)
    route = categorize(lab, "user@fabrikam.example", "EX01")
    assert route == Route("relay", next_hop=NextHop(
        DeliveryType.SMTP_RELAY_WITHIN_AD_SITE_TO_EDGE, INTERNET.lower(), INTERNET),
        connector=INTERNET, relay_servers=("EDGE01",))
    assert categorize(lab, "bob@contoso.com", "EX01").kind == "mailbox"
    assert categorize(lab, "nobody@contoso.com", "EX01").kind == "ndr"


def test_the_edge_sends_the_organizations_mail_to_the_mailbox_servers() -> None:
    lab = load_config(EDGE_LAB)
    hop = NextHop(DeliveryType.SMART_HOST_CONNECTOR_DELIVERY, INBOUND.lower(), INBOUND)
    # bob's own server first; an unknown recipient goes in too (no recipient filtering).
    assert categorize(lab, "bob@contoso.com", "EDGE01") == Route(
        "inbound", next_hop=hop, connector=INBOUND, relay_servers=("EX02", "EX01"))
    assert categorize(lab, "nobody@contoso.com", "EDGE01") == Route(
        "inbound", next_hop=hop, connector=INBOUND, relay_servers=("EX01", "EX02"))
    route = categorize(lab, "user@fabrikam.example", "EDGE01")
    assert route == Route("connector", next_hop=NextHop(
        DeliveryType.DNS_CONNECTOR_DELIVERY, "fabrikam.example", INTERNET), connector=INTERNET)


def test_the_edge_uses_only_its_own_connectors() -> None:
    text = EDGE_LAB.read_text(encoding="utf-8") + (
        "SendConnectors:\n  - {Name: Mailbox Out, AddressSpaces: [\"fabrikam.example\"], "
        "SmartHosts: [\"[127.0.10.250]\"]}\n")
    lab = load_config_text(text, "edge.yaml")
    # The Mailbox servers' more specific connector wins there; the Edge never sees it.
    assert categorize(lab, "user@fabrikam.example", "EX01").connector == "Mailbox Out"
    assert categorize(lab, "user@fabrikam.example", "EDGE01").connector == INTERNET


def test_without_inbound_connector_the_organizations_mail_is_unreachable_on_the_edge() -> None:
    text = EDGE_LAB.read_text(encoding="utf-8").replace(
        "Site: Default-First-Site-Name}", "Site: Default-First-Site-Name, "
        "CreateInboundSendConnector: false}")
    lab = load_config_text(text, "edge.yaml")
    assert categorize(lab, "bob@contoso.com", "EDGE01").kind == "unreachable"


def test_who_trusts_whom() -> None:
    lab = load_config(EDGE_LAB)
    assert direct_trust_peers(lab, "EX01") == ("EDGE01",)
    assert direct_trust_peers(lab, "EDGE01") == ("EX01", "EX02")
    assert known_servers(lab, "EX01") == ("EX01", "EX02", "EDGE01")
    assert known_servers(lab, "EDGE01") == ("EDGE01", "EX01", "EX02")
    text = EDGE_LAB.read_text(encoding="utf-8").replace(
        "EdgeSubscriptions:\n  - {Server: EDGE01, Site: Default-First-Site-Name}\n", "")
    unsubscribed = load_config_text(text, "edge.yaml")
    assert direct_trust_peers(unsubscribed, "EX01") == ()
    assert known_servers(unsubscribed, "EX01") == ("EX01", "EX02")
    assert known_servers(unsubscribed, "EDGE01") == ("EDGE01",)
