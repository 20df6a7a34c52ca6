"""Connector selection (exchange.md §3.5): binding, most specific RemoteIPRanges, exact beats wildcard."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings, strategies as st

from exchsim.config.model import ReceiveConnector
from exchsim.policy.connectors import ConnectorIndex
from tests.factories import connector

LOCAL = ipaddress.ip_address("127.0.10.1")


def pick(connectors: list[ReceiveConnector], remote: str, port: int = 25,
         local: ipaddress.IPv4Address | ipaddress.IPv6Address = LOCAL) -> str | None:
    chosen = ConnectorIndex.build(connectors).select(local, port, ipaddress.ip_address(remote))
    return chosen.connector.name if chosen.connector else None


def doc_example() -> list[ReceiveConnector]:
    return [
        connector("Default Frontend EX01", Bindings=["0.0.0.0:25", "[::]:25"]),
        connector("Net", RemoteIPRanges=["127.0.20.0/24"]),
        connector("Host", RemoteIPRanges=["127.0.20.75"]),
    ]


def test_most_specific_range_wins_as_in_the_documentation_example() -> None:
    connectors = doc_example()
    assert pick(connectors, "127.0.20.75") == "Host"
    assert pick(connectors, "127.0.20.100") == "Net"
    assert pick(connectors, "127.0.0.1") == "Default Frontend EX01"


def test_ipv6_client_matches_the_ipv6_catch_all() -> None:
    connectors = doc_example()
    assert pick(connectors, "::1", local=ipaddress.ip_address("::1")) == "Default Frontend EX01"


def test_ipv4_mapped_ipv6_peer_is_treated_as_ipv4() -> None:
    assert pick(doc_example(), "::ffff:127.0.20.75") == "Host"


def test_exact_binding_beats_wildcard_on_a_tie() -> None:
    connectors = [
        connector("Wild", RemoteIPRanges=["127.0.0.0/8"]),
        connector("Exact", Bindings=["127.0.10.1:25"], RemoteIPRanges=["127.0.0.0/8"]),
    ]
    assert pick(connectors, "127.0.0.5") == "Exact"
    assert pick(list(reversed(connectors)), "127.0.0.5") == "Exact"


def test_exact_binding_for_another_address_is_not_a_candidate() -> None:
    connectors = [connector("Other", Bindings=["127.0.10.2:25"], RemoteIPRanges=["127.0.0.1"])]
    assert pick(connectors, "127.0.0.1") is None


def test_no_match_and_wrong_port_give_none() -> None:
    connectors = [connector("Only10", RemoteIPRanges=["10.0.0.0/8"])]
    assert pick(connectors, "127.0.0.1") is None
    assert pick(doc_example(), "127.0.0.1", port=587) is None


def test_disabled_connectors_are_ignored() -> None:
    connectors = [*doc_example(), connector("Off", RemoteIPRanges=["127.0.20.75"], Enabled=False)]
    assert pick(connectors, "127.0.20.75") == "Host"


def test_selection_describes_its_choice() -> None:
    chosen = ConnectorIndex.build(doc_example()).select(
        LOCAL, 25, ipaddress.ip_address("127.0.20.80"))
    assert "EX01\\Net" in chosen.describe()
    assert "127.0.20.0/24" in chosen.describe()


def brute_force(connectors: list[ReceiveConnector], remote: str, port: int = 25) -> str | None:
    ip = ipaddress.ip_address(remote)
    best = None
    for c in connectors:
        if not c.enabled:
            continue
        exact = any(not b.is_wildcard and b.address == LOCAL and b.port == port for b in c.bindings)
        wild = any(b.is_wildcard and b.port == port and b.address.version == LOCAL.version
                   for b in c.bindings)
        if not (exact or wild):
            continue
        for r in c.remote_ip_ranges:
            if r.version == ip.version and r.first <= int(ip) <= r.last:
                key = (r.size, 0 if exact else 1, c.name.lower())
                if best is None or key < best[0]:
                    best = (key, c.name)
    return best[1] if best else None


@st.composite
def connector_sets(draw: st.DrawFn) -> list[ReceiveConnector]:
    count = draw(st.integers(min_value=1, max_value=12))
    out = []
    for i in range(count):
        ranges = []
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            a = draw(st.integers(min_value=0, max_value=255))
            b = draw(st.integers(min_value=a, max_value=255))
            ranges.append(f"127.0.5.{a}-127.0.5.{b}")
        binding = draw(st.sampled_from(["0.0.0.0:25", "127.0.10.1:25", "0.0.0.0:587"]))
        out.append(connector(f"C{i}", Bindings=[binding], RemoteIPRanges=ranges))
    return out


@settings(max_examples=60, deadline=None)
@given(connector_sets(), st.integers(min_value=0, max_value=255), st.randoms())
def test_choice_matches_definition_and_ignores_input_order(
    connectors: list[ReceiveConnector], last_octet: int, rnd: random.Random
) -> None:
    remote = f"127.0.5.{last_octet}"
    expected = brute_force(connectors, remote)
    assert pick(connectors, remote) == expected
    shuffled = list(connectors)
    rnd.shuffle(shuffled)
    assert pick(shuffled, remote) == expected


@settings(max_examples=30, deadline=None)
@given(connector_sets(), st.integers(min_value=0, max_value=255))
def test_a_connector_on_another_port_never_changes_the_choice(
    connectors: list[ReceiveConnector], last_octet: int
) -> None:
    remote = f"127.0.5.{last_octet}"
    before = pick(connectors, remote)
    extra = connector("Elsewhere", Bindings=["0.0.0.0:2525"], RemoteIPRanges=["127.0.5.7"])
    assert pick([*connectors, extra], remote) == before


def test_thousands_of_connectors_still_choose_correctly() -> None:
    connectors = [connector("Default", RemoteIPRanges=["0.0.0.0-255.255.255.255"])]
    for i in range(3000):
        net = ipaddress.ip_network((int(ipaddress.ip_address("10.0.0.0")) + i * 256, 24))
        connectors.append(connector(f"Net{i:04}", RemoteIPRanges=[str(net)]))
    index = ConnectorIndex.build(connectors)
    assert index.select(LOCAL, 25, ipaddress.ip_address("10.0.11.9")).connector is not None
    assert index.select(LOCAL, 25, ipaddress.ip_address("10.0.11.9")).connector.name == "Net0011"  # type: ignore[union-attr]
    assert index.select(LOCAL, 25, ipaddress.ip_address("192.0.2.1")).connector.name == "Default"  # type: ignore[union-attr]
