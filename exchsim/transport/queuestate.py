"""What the delivery agent knows of its queues in memory (exchange.md §8.5): which next hop each
pending recipient was last routed to, which destinations are in Retry and why, and the queue
integers Get-Queue shows (``EX01\\3``).

:func:`next_hop_of` maps the agent's destinations to Exchange's next hops
(:class:`~exchsim.policy.nexthop.NextHop`); it is the one place to change when routing through
send connectors produces the next hop itself:

- a mailbox of the organization: ``SmtpDeliveryToMailbox`` with the name of the mailbox
  server's database as NextHopDomain (:func:`database_name`: setup's naming, ``Mailbox
  Database`` and ten digits, derived from the server name so that it is stable; Get-Queue shows
  the name lower-cased);
- anything for the lab's internet sink: ``DnsConnectorDelivery`` per recipient domain, the queue
  an Internet send connector with DNS routing (``AddressSpaces *``) would make, with the
  connector name the tracking log gives the sink (``Internet``).

The durable facts (Suspended, LastError, attempts, next retry) are in the queue file; the rest
is here and starts empty after a restart, as Exchange's delivery queues are rebuilt at start.
"""

from __future__ import annotations

import datetime
import zlib
from dataclasses import dataclass, field

from exchsim.config.model import Lab
from exchsim.policy.nexthop import NextHop
from exchsim.transport.hub import Route

__all__ = ["NO_MATCHING_CONNECTOR", "HopFailure", "QueueState", "database_name", "destination_of",
           "next_hop_of"]

NO_MATCHING_CONNECTOR = "A matching connector cannot be found to route the external recipient"
"""The LastError of a message in the Unreachable queue (Exchange's documented example,
exchange.md §8.5): the reason to give when no send connector matches."""


def database_name(server: str) -> str:
    """The name of ``server``'s mailbox database, as setup names one: ``Mailbox Database``
    and ten digits (here a checksum of the server name, so that it never changes)."""
    return f"Mailbox Database {zlib.crc32(server.upper().encode()) % 10**10:010d}"


def next_hop_of(lab: Lab, route: Route, recipient: str) -> NextHop | None:
    """The next hop of a recipient the hub routed to ``route`` (None: no queue; the recipient
    fails at once, e.g. an unknown address in an Authoritative domain): the routing's own
    (transport/hub.categorize, policy/outbound.py)."""
    return route.next_hop


def destination_of(route: Route) -> str:
    """The agent's name of where ``route`` goes (one connection target: a mailbox server's
    Mailbox Transport Delivery, a send connector's next hop, the source servers of another
    server's connector)."""
    if route.kind == "mailbox":
        return f"mailbox {route.server}"
    if route.next_hop is None or route.kind == "unreachable":
        return "unreachable"
    return f"{route.next_hop.domain} (send connector {route.connector})"


@dataclass
class HopFailure:
    """A destination that could not be reached: its queues are in Retry."""

    reason: str
    first: datetime.datetime
    last: datetime.datetime
    next: datetime.datetime
    failures: int


@dataclass
class QueueState:
    """One hub's in-memory queue facts (owned by its delivery agent)."""

    routed: dict[int, dict[str, tuple[NextHop, str]]] = field(default_factory=dict)
    """InternalId -> pending recipient -> (next hop, destination) of its last routing."""
    down: dict[str, HopFailure] = field(default_factory=dict)
    """Destination -> why and until when it is in Retry."""
    held: set[int] = field(default_factory=set)
    """Messages an admin is suspending or removing: never handed to a delivery attempt."""
    suspended: set[NextHop] = field(default_factory=set)
    """Delivery queues an admin suspended (Suspend-Queue): nothing leaves them until resumed.
    Kept in memory only, like the delivery queues themselves: after a restart every queue is
    Ready again (exchsim's choice, exchange.md §8.5)."""
    _numbers: dict[NextHop, int] = field(default_factory=dict)

    def route(self, internal_id: int, recipients: dict[str, tuple[NextHop, str]]) -> None:
        self.routed.setdefault(internal_id, {}).update(recipients)

    def settled(self, internal_id: int, recipients: list[str]) -> None:
        """These recipients left the queue (delivered, failed or removed)."""
        hops = self.routed.get(internal_id)
        if hops is None:
            return
        for rcpt in recipients:
            hops.pop(rcpt, None)
        if not hops:
            del self.routed[internal_id]

    def forget(self, internal_id: int) -> None:
        self.routed.pop(internal_id, None)

    def failed(self, destination: str, reason: str, now: datetime.datetime,
               retry_at: datetime.datetime) -> int:
        """A connection to ``destination`` failed; returns the failures in a row."""
        known = self.down.get(destination)
        if known is None:
            known = self.down[destination] = HopFailure(reason, now, now, retry_at, 0)
        known.reason, known.last, known.next = reason, now, retry_at
        known.failures += 1
        return known.failures

    def failures(self, destination: str) -> int:
        known = self.down.get(destination)
        return 0 if known is None else known.failures

    def reached(self, destination: str) -> bool:
        """``destination`` took a connection; returns whether it was in Retry."""
        return self.down.pop(destination, None) is not None

    def number(self, hop: NextHop) -> int:
        """The queue integer of ``hop``'s delivery queue (``EX01\\<n>``), stable for the life
        of the process; numbers start at 3, after the persistent queues."""
        found = self._numbers.get(hop)
        if found is None:
            found = self._numbers[hop] = len(self._numbers) + 3
        return found
