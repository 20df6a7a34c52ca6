"""Which servers' certificates a server takes as those of Exchange servers of the
organization, and which of them over Direct Trust (exchange.md §4.1 item 3, §7.6). Pure.

Exchange: an Edge server is in no domain; the Edge subscription publishes its certificate in
Active Directory, and EdgeSync copies the Mailbox servers' certificates into the Edge's AD LDS.
From then on a session in which the peer presents one of those certificates (X-ANONYMOUSTLS)
is authenticated as ExchangeServers by Direct Trust (AuthMechanism DirectTrustTLS, ``11``).

exchsim, by ``EdgeSubscriptions`` (config/edgesync.py):

- a Mailbox (or Client Access) server knows the certificates of the organization's Mailbox and
  Client Access servers (EXCHANGEAUTH between them, as before) and of the subscribed Edge
  servers (Direct Trust);
- a subscribed Edge server knows its own and the Mailbox servers' (Direct Trust);
- an Edge server without a subscription knows only its own: a Mailbox server's certificate
  gets ``454 4.7.0`` there, and the Edge's gets it on the Mailbox servers.
"""

from __future__ import annotations

from exchsim.config.model import Lab, ServerRole

__all__ = ["direct_trust_peers", "known_servers", "subscribed_edges"]


def subscribed_edges(lab: Lab) -> frozenset[str]:
    """The lower-case names of the Edge servers with a subscription."""
    return frozenset(s.server.lower() for s in lab.edge_subscriptions)


def _members(lab: Lab) -> list[str]:
    return [s.name for s in lab.servers if s.role is not ServerRole.EDGE]


def direct_trust_peers(lab: Lab, server: str) -> tuple[str, ...]:
    """The servers (names) whose certificate authenticates a session with ``server`` by Direct
    Trust: for a Mailbox server the subscribed Edges, for a subscribed Edge the Mailbox
    servers, else none."""
    edges = subscribed_edges(lab)
    this = lab.server(server)
    if this.role is ServerRole.EDGE:
        if server.lower() not in edges:
            return ()
        return tuple(s.name for s in lab.servers if s.role is ServerRole.MAILBOX)
    return tuple(s.name for s in lab.servers if s.name.lower() in edges)


def known_servers(lab: Lab, server: str) -> tuple[str, ...]:
    """The servers (names) whose published certificate ``server`` accepts at all: itself, the
    organization's members when it is one of them, and its Direct Trust peers."""
    this = lab.server(server)
    own = _members(lab) if this.role is not ServerRole.EDGE else [this.name]
    return tuple(dict.fromkeys([*own, *direct_trust_peers(lab, server)]))
