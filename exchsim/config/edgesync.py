"""Edge subscriptions and the send connectors they create (exchange.md §7.6).

``EdgeSubscriptions:`` (a top-level key, exchsim's stand-in for New-EdgeSubscription) names
an Edge server of the config and the AD site it is subscribed to. A subscription:

- creates ``EdgeSync - Inbound to <Site>`` (CreateInboundSendConnector): address space
  ``SMTP:--;1`` (``--``: every Authoritative and InternalRelay accepted domain of the
  organization), smart hosts ``--`` (every Mailbox server of the site; exchsim has one site, so
  every Mailbox server of the config), DNS routing off, port 25, SmartHostAuthMechanism
  ExchangeServer, source server the Edge;
- creates ``EdgeSync - <Site> to Internet`` (CreateInternetSendConnector): address space
  ``SMTP:*;100``, DNS routing, DomainSecureEnabled true, source server the Edge;
- sets up Direct Trust between the Edge and the Mailbox servers (exchange.md §4.1 item 3): each
  side takes the other's server certificate as that of an Exchange server of the organization.

An entry of ``SendConnectors`` with the same Name as one of these changes it: its keys replace
the subscription's values, the others stay (as Set-SendConnector on the connector EdgeSync
created). A lab whose Internet is the internet sink may, for example, give the Internet
connector ``SmartHosts: ["[127.0.10.250]"]`` with ``DNSRoutingEnabled: false`` and
``DomainSecureEnabled: false``; the usual alternative is a ``Dns.MX`` entry ``"*"`` (README,
"Edge Transport").

Pure data: the rules between objects are ``validate/edgesync.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import Field

from exchsim.config.base import Bool, ExchangeObject

__all__ = [
    "DEFAULT_SITE",
    "EDGESYNC_COMMENT",
    "ORGANIZATION_DOMAINS",
    "SITE_SERVERS",
    "EdgeSubscription",
    "edgesync_raw_connectors",
    "inbound_name",
    "internet_name",
]

DEFAULT_SITE = "Default-First-Site-Name"
ORGANIZATION_DOMAINS = "--"
"""The address space ``--``: the organization's Authoritative and InternalRelay domains."""
SITE_SERVERS = "--"
"""The smart host ``--``: the Mailbox servers of the subscribed site."""
EDGESYNC_COMMENT = "Created by the Edge subscription of {server} (EdgeSubscriptions)."


class EdgeSubscription(ExchangeObject):
    """One Edge subscription: New-EdgeSubscription's site and connector switches."""

    server: str = Field(alias="Server", min_length=1)
    site: str = Field(alias="Site", default=DEFAULT_SITE, min_length=1, max_length=63,
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    create_internet_send_connector: Bool = Field(alias="CreateInternetSendConnector",
                                                 default=True)
    create_inbound_send_connector: Bool = Field(alias="CreateInboundSendConnector",
                                                default=True)


def inbound_name(site: str) -> str:
    return f"EdgeSync - Inbound to {site}"


def internet_name(site: str) -> str:
    return f"EdgeSync - {site} to Internet"


def edgesync_raw_connectors(subscriptions: Iterable[EdgeSubscription]) -> list[dict[str, Any]]:
    """The send connectors the subscriptions create, as raw config entries (so that a
    ``SendConnectors`` entry of the same Name can change them before validation)."""
    out: list[dict[str, Any]] = []
    for sub in subscriptions:
        comment = EDGESYNC_COMMENT.format(server=sub.server)
        if sub.create_inbound_send_connector:
            out.append({
                "Name": inbound_name(sub.site),
                "AddressSpaces": [f"SMTP:{ORGANIZATION_DOMAINS};1"],
                "SmartHosts": [SITE_SERVERS],
                "DNSRoutingEnabled": False,
                "Port": 25,
                "SmartHostAuthMechanism": "ExchangeServer",
                "SourceTransportServers": [sub.server],
                "Comment": comment,
            })
        if sub.create_internet_send_connector:
            out.append({
                "Name": internet_name(sub.site),
                "AddressSpaces": ["SMTP:*;100"],
                "DNSRoutingEnabled": True,
                "DomainSecureEnabled": True,
                "Port": 25,
                "SourceTransportServers": [sub.server],
                "Comment": comment,
            })
    return out


def merge_send_connectors(raw: object, implied: list[dict[str, Any]]) -> object:
    """``SendConnectors`` as written with the subscription's connectors merged in: an entry
    of the same Name (case-insensitive) is laid over the implied one in its place; implied
    connectors no entry names come after the file's."""
    if not implied:
        return raw
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        return raw  # validate_send_connectors reports it
    by_name = {str(c["Name"]).lower(): c for c in implied}
    merged: list[object] = []
    for item in raw:
        name = item.get("Name") if isinstance(item, dict) else None
        base = by_name.pop(str(name).lower(), None) if isinstance(name, str) else None
        merged.append({**base, **item, "Name": base["Name"]} if base is not None and
                      isinstance(item, dict) else item)
    merged.extend(c for c in implied if str(c["Name"]).lower() in by_name)
    return merged
