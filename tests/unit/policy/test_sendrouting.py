"""Send connector selection (exchange.md §8.2): most specific address space, then cost, then a
connector of the routing server, then the name; none -> Unreachable (None)."""

from __future__ import annotations

from typing import Any

import pytest

from exchsim.config.sendconnector import AddressSpace, SendConnector
from exchsim.policy.sendrouting import match_rank, select_send_connector

SERVERS = ("EX01", "EX02")


def sc(name: str, *spaces: str, **fields: Any) -> SendConnector:
    return SendConnector.model_validate({"Name": name, "AddressSpaces": list(spaces), **fields})


def pick(connectors: list[SendConnector], domain: str, source: str = "EX01",
         size: int | None = None) -> str | None:
    route = select_send_connector(connectors, domain, source, SERVERS, size)
    return None if route is None else route.connector.name


def test_no_connector_means_unreachable() -> None:
    assert pick([], "fabrikam.example") is None
    assert pick([sc("Partner", "partner.example")], "fabrikam.example") is None


def test_star_matches_every_domain() -> None:
    assert pick([sc("Internet", "*")], "fabrikam.example") == "Internet"


@pytest.mark.parametrize(("domain", "expected"), [
    ("marketing.contoso.com", "Exact"),
    ("sales.contoso.com", "Wildcard"),
    ("contoso.com", "Wildcard"),
    ("a.b.contoso.com", "Wildcard"),
    ("notcontoso.com", "Internet"),
    ("fabrikam.example", "Internet"),
])
def test_most_specific_space_wins_whatever_the_cost(domain: str, expected: str) -> None:
    connectors = [sc("Internet", "*;1"), sc("Wildcard", "*.contoso.com;50"),
                  sc("Exact", "marketing.contoso.com;100")]
    assert pick(connectors, domain) == expected


def test_exact_domain_beats_a_wildcard_of_the_same_length() -> None:
    connectors = [sc("A-Wild", "*.contoso.com"), sc("B-Exact", "contoso.com;9")]
    assert pick(connectors, "contoso.com") == "B-Exact"


def test_deeper_wildcard_beats_shallower() -> None:
    connectors = [sc("Shallow", "*.com"), sc("Deep", "*.contoso.com;99")]
    assert pick(connectors, "x.contoso.com") == "Deep"
    assert pick(connectors, "x.fabrikam.com") == "Shallow"


def test_ties_on_specificity_go_to_the_lowest_cost() -> None:
    connectors = [sc("A", "*.contoso.com;10"), sc("B", "*.contoso.com;2")]
    assert pick(connectors, "x.contoso.com") == "B"


def test_ties_on_cost_go_to_a_connector_of_the_routing_server() -> None:
    connectors = [sc("A", "*", SourceTransportServers=["EX02"]),
                  sc("B", "*", SourceTransportServers=["EX01"])]
    assert pick(connectors, "fabrikam.example", "EX01") == "B"
    assert pick(connectors, "fabrikam.example", "ex02") == "A"
    route = select_send_connector(connectors[:1], "fabrikam.example", "EX01", SERVERS)
    assert route is not None and route.local is False


def test_no_source_servers_means_every_mailbox_server() -> None:
    route = select_send_connector([sc("Any", "*")], "x.example", "EX02", SERVERS)
    assert route is not None and route.local is True


def test_last_tie_is_the_alphabetically_lowest_name() -> None:
    connectors = [sc("Zulu", "*"), sc("alpha", "*"), sc("Bravo", "*")]
    assert pick(connectors, "fabrikam.example") == "alpha"
    assert pick(list(reversed(connectors)), "fabrikam.example") == "alpha"


def test_cost_counts_only_after_specificity() -> None:
    connectors = [sc("Cheap", "*;1"), sc("Dear", "fabrikam.example;100")]
    assert pick(connectors, "fabrikam.example") == "Dear"


def test_a_connectors_best_space_is_used() -> None:
    connectors = [sc("Multi", "*;1", "fabrikam.example;7"), sc("Other", "fabrikam.example;5")]
    route = select_send_connector(connectors, "fabrikam.example", "EX01", SERVERS)
    assert route is not None
    assert route.connector.name == "Other"
    assert route.space == AddressSpace("SMTP", "fabrikam.example", 5)


def test_disabled_connectors_are_not_chosen() -> None:
    connectors = [sc("Off", "fabrikam.example", Enabled=False), sc("On", "*")]
    assert pick(connectors, "fabrikam.example") == "On"
    assert pick(connectors[:1], "fabrikam.example") is None


def test_a_message_above_max_message_size_skips_the_connector() -> None:
    connectors = [sc("Small", "fabrikam.example", MaxMessageSize="1MB"), sc("Big", "*")]
    assert pick(connectors, "fabrikam.example", size=2 * 1024 * 1024) == "Big"
    assert pick(connectors, "fabrikam.example", size=1000) == "Small"
    assert pick([sc("Unl", "*", MaxMessageSize="Unlimited")], "x.example", size=10**12) == "Unl"


def test_domains_compare_without_case_or_trailing_dot() -> None:
    assert pick([sc("P", "Partner.Example")], "PARTNER.example.") == "P"


def test_match_rank() -> None:
    assert match_rank(AddressSpace("SMTP", "*", 1), "a.b") == (0, 0)
    assert match_rank(AddressSpace("SMTP", "*.b", 1), "a.b") == (1, 0)
    assert match_rank(AddressSpace("SMTP", "a.b", 1), "a.b") == (2, 1)
    assert match_rank(AddressSpace("SMTP", "a.b", 1), "x.a.b") is None
    assert match_rank(AddressSpace("X400", "*", 1), "a.b") is None
