"""Which send connector carries mail for a recipient domain (exchange.md §8.2).

Pure: the connectors and the facts are passed in. The order follows Microsoft's connector
selection page (D-CS):

1. connectors that are disabled, or whose MaxMessageSize is below the message's size, are out;
2. of the rest, those with an SMTP address space that matches the domain;
3. the most specific matching address space wins (``marketing.contoso.com`` before
   ``*.contoso.com`` before ``*``; an exact domain before a wildcard of the same length;
   ``*.contoso.com`` also matches ``contoso.com`` itself);
4. ties: the lowest cost (exchsim has one AD site, so the aggregate cost is the address space's
   cost);
5. ties: the fewest hops: a connector whose SourceTransportServers include the server routing the
   message before one that needs a hop to another server;
6. ties: the alphabetically lowest connector name.

No connector -> ``None``: the message goes to the Unreachable queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exchsim.config.sendconnector import AddressSpace, SendConnector

__all__ = ["SendRoute", "match_rank", "select_send_connector", "source_servers"]


@dataclass(frozen=True, slots=True)
class SendRoute:
    """The chosen connector, the address space that matched, and whether the routing server is
    one of its source servers (``local``) or must hand the message to one of them."""

    connector: SendConnector
    space: AddressSpace
    local: bool


def match_rank(space: AddressSpace, domain: str) -> tuple[int, int] | None:
    """How specific ``space`` is for ``domain``: (labels, exact) with larger more specific, or
    ``None`` when it does not match."""
    if space.type.upper() != "SMTP":
        return None
    domain = domain.lower().rstrip(".")
    if space.domain == "*":
        return (0, 0)
    if space.domain.startswith("*."):
        base = space.domain[2:]
        if domain == base or domain.endswith("." + base):
            return (base.count(".") + 1, 0)
        return None
    if domain == space.domain:
        return (space.domain.count(".") + 1, 1)
    return None


def source_servers(connector: SendConnector, mailbox_servers: Iterable[str]) -> tuple[str, ...]:
    """The connector's source servers; none written means every Mailbox server of the lab."""
    return connector.source_transport_servers or tuple(mailbox_servers)


def select_send_connector(
    connectors: Sequence[SendConnector],
    domain: str,
    source_server: str,
    mailbox_servers: Iterable[str],
    size: int | None = None,
) -> SendRoute | None:
    """The connector Exchange picks for ``domain`` on ``source_server`` (module docstring)."""
    servers = tuple(mailbox_servers)
    best: tuple[tuple[int, int, int, int, str], SendRoute] | None = None
    for connector in connectors:
        if not connector.enabled:
            continue
        limit = connector.max_message_size
        if size is not None and limit is not None and size > limit:
            continue
        ranked = [(r, s) for s in connector.address_spaces
                  if (r := match_rank(s, domain)) is not None]
        if not ranked:
            continue
        # within one connector: its most specific space, then its lowest cost
        rank, space = max(ranked, key=lambda item: (item[0], -item[1].cost))
        local = source_server.lower() in {
            s.lower() for s in source_servers(connector, servers)}
        key = (-rank[0], -rank[1], space.cost, 0 if local else 1, connector.name.lower())
        if best is None or key < best[0]:
            best = (key, SendRoute(connector, space, local))
    return None if best is None else best[1]
