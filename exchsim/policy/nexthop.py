"""The next hop of a group of recipients: what a delivery queue is keyed by (exchange.md §8.2).

Exchange's categorizer routes each recipient to a next hop; the hub keeps one delivery queue per
next hop, and Get-Queue shows each with its DeliveryType, NextHopDomain and NextHopConnector.
This module is the seam between routing (which produces a :class:`NextHop` for every recipient
group) and the queue views (which group messages by it). Pure data.

The DeliveryType names are those of Exchange's queue viewer; exchsim produces a subset:
``SmtpDeliveryToMailbox`` (a mailbox of the organization, NextHopDomain = the mailbox
database), ``DnsConnectorDelivery`` and ``SmartHostConnectorDelivery`` (a send connector of this
server; NextHopDomain = the recipient domain or the smart host list),
``SmtpRelayToConnectorSourceServers`` (a send connector of another server: relayed to one of its
source servers), ``SmtpRelayWithinAdSiteToEdge`` (a send connector of subscribed Edge servers:
relayed to an Edge's 25, NextHopDomain the connector's name; exchange.md §7.6), ``Unreachable``
(no send connector matches; NextHopDomain names why).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DeliveryType", "NextHop"]


class DeliveryType(enum.StrEnum):
    """Get-Queue's DeliveryType (the values exchsim produces)."""

    SMTP_DELIVERY_TO_MAILBOX = "SmtpDeliveryToMailbox"
    DNS_CONNECTOR_DELIVERY = "DnsConnectorDelivery"
    SMART_HOST_CONNECTOR_DELIVERY = "SmartHostConnectorDelivery"
    SMTP_RELAY_TO_CONNECTOR_SOURCE_SERVERS = "SmtpRelayToConnectorSourceServers"
    SMTP_RELAY_WITHIN_AD_SITE_TO_EDGE = "SmtpRelayWithinAdSiteToEdge"
    UNREACHABLE = "Unreachable"
    UNDEFINED = "Undefined"


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where a group of recipients goes next; equal next hops share one delivery queue."""

    delivery_type: DeliveryType
    domain: str
    """Get-Queue's NextHopDomain (lower case)."""
    connector: str | None = None
    """The send connector's name (Get-Queue's NextHopConnector); None for the implicit
    intra-organization connector and for Unreachable."""
