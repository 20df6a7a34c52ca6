"""policy/hubselect.py: the hubs a Front End tries, in order (exchange.md §7.2)."""

from __future__ import annotations

from typing import Any

import yaml

from exchsim.config.load import load_config_text
from exchsim.config.model import Lab
from exchsim.policy.hubselect import hub_order


def lab(edge: bool = False) -> Lab:
    servers: list[dict[str, Any]] = [
        {"Name": n, "Role": "Mailbox", "Fqdn": f"{n.lower()}.contoso.com",
         "Address": f"127.0.10.{i}"} for i, n in enumerate(("EX01", "EX02", "EX03"), 1)]
    if edge:
        servers.append({"Name": "EDGE01", "Role": "Edge", "Fqdn": "edge01.contoso.com",
                        "Address": "127.0.10.9"})
    raw = {
        "Organization": {
            "Name": "Contoso",
            "AcceptedDomains": [{"DomainName": "contoso.com", "DomainType": "Authoritative",
                                 "Default": True}],
            "Mailboxes": [
                {"PrimarySmtpAddress": "alice@contoso.com", "Server": "EX01"},
                {"PrimarySmtpAddress": "bob@contoso.com", "Server": "EX03",
                 "EmailAddresses": ["smtp:robert@contoso.com"]},
            ],
        },
        "Servers": servers,
    }
    return load_config_text(yaml.safe_dump(raw), "hubs.yaml")


def test_the_recipients_mailbox_server_comes_first_then_the_front_ends_own() -> None:
    config = lab()
    ex02 = config.server("EX02")
    assert hub_order(config, ex02, ["Bob@Contoso.com"]) == ("EX03", "EX02", "EX01")
    assert hub_order(config, ex02, ["robert@contoso.com"]) == ("EX03", "EX02", "EX01")
    assert hub_order(config, ex02, ["alice@contoso.com", "bob@contoso.com"]) == (
        "EX01", "EX03", "EX02")


def test_without_a_mailbox_the_front_ends_own_server_then_the_config_order() -> None:
    config = lab()
    assert hub_order(config, config.server("EX03"), ["user@fabrikam.example"]) == (
        "EX03", "EX01", "EX02")
    assert hub_order(config, config.server("EX01"), []) == ("EX01", "EX02", "EX03")


def test_client_submission_goes_to_the_senders_server_first() -> None:
    config = lab()
    assert hub_order(config, config.server("EX01"), ["alice@contoso.com"],
                     "bob@contoso.com") == ("EX03", "EX01", "EX02")


def test_an_edge_server_is_never_a_hub_of_the_front_end() -> None:
    config = lab(edge=True)
    assert "EDGE01" not in hub_order(config, config.server("EX01"), ["x@contoso.com"])
