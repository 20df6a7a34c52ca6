"""The receive connectors Exchange setup creates, per server Role.

Source: ``docs/exchange.md`` §3.3 (names, ports, AuthMechanism, PermissionGroups and the
non-default parameters of each), exchange.md §3.1 for everything else, exchange.md §3.2 for the
defaults a new connector gets from its Usage.

They are returned as raw specs in Exchange's spelling so that a config can name a default
connector (same Server and Name) and change or disable it: the loader lays the config's keys
over these and validates the result as one ReceiveConnector.

Decisions where the sources leave a choice (written down here and in exchange.md §9):
- ``Default <SRV>`` (hub, 2525): the doc lists ``Tls, Integrated, BasicAuth, ExchangeServer``
  and notes ``+BasicAuthRequireTLS in some builds``. The observed EHLO of that connector
  (exchange.md §1.5) shows ``AUTH NTLM`` before TLS (no LOGIN), which only holds with
  BasicAuthRequireTLS, so exchsim includes it.
- MaxHopCount / MaxLocalHopCount (exchange.md §9.3): connectors created by setup use the values
  observed on a 2016 Default Frontend, 60 / 5; connectors created in the config use the
  documented 30 / 8.
- The implicit Mailbox Transport Delivery listener on 475 is modelled as a connector named
  ``Mailbox Delivery <SRV>`` with TransportRole ``MailboxDelivery`` (Exchange does not show it).
- Edge: ``Default internal receive connector <SRV>`` binds 0.0.0.0:25 only.
- ClientAccess (Exchange 2013's Client Access server, exchange.md §7.9): the three
  FrontendTransport connectors only (Default Frontend, Outbound Proxy Frontend, Client Frontend).
"""

from __future__ import annotations

from typing import Any

from exchsim.config.model import ServerRole, Usage

RawConnector = dict[str, Any]

_FULL_AUTH = ["Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer"]
_SETUP_HOPS = {"MaxHopCount": 60, "MaxLocalHopCount": 5}


def default_connectors(server: str, role: ServerRole, fqdn: str) -> list[RawConnector]:
    """The setup-created receive connectors of one server, as raw specs (exchange.md §3.3)."""
    if role is ServerRole.EDGE:
        return [
            {
                "Name": f"Default internal receive connector {server}",
                "Server": server,
                "TransportRole": "EdgeTransport",
                "Bindings": ["0.0.0.0:25"],
                "AuthMechanism": ["Tls", "ExchangeServer"],
                "PermissionGroups": ["AnonymousUsers", "ExchangeServers", "Partners"],
                "ConnectionTimeout": "00:05:00",
                "ConnectionInactivityTimeout": "00:01:00",
                "MessageRateLimit": 600,
                **_SETUP_HOPS,
            }
        ]
    connectors: list[RawConnector] = [
        {
            "Name": f"Default Frontend {server}",
            "Server": server,
            "TransportRole": "FrontendTransport",
            "Bindings": ["0.0.0.0:25", "[::]:25"],
            "AuthMechanism": _FULL_AUTH,
            "PermissionGroups": ["AnonymousUsers", "ExchangeServers", "ExchangeLegacyServers"],
            "ProtocolLoggingLevel": "Verbose",
            "DomainSecureEnabled": True,
            "MaxRecipientsPerMessage": 200,
            **_SETUP_HOPS,
        },
        {
            "Name": f"Outbound Proxy Frontend {server}",
            "Server": server,
            "TransportRole": "FrontendTransport",
            "Bindings": ["0.0.0.0:717", "[::]:717"],
            "AuthMechanism": _FULL_AUTH,
            "PermissionGroups": ["ExchangeServers"],
            **_SETUP_HOPS,
        },
        {
            "Name": f"Client Frontend {server}",
            "Server": server,
            "TransportRole": "FrontendTransport",
            "Bindings": ["0.0.0.0:587", "[::]:587"],
            "AuthMechanism": ["Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS"],
            "PermissionGroups": ["ExchangeUsers"],
            "Fqdn": fqdn,
            "EnableAuthGSSAPI": True,
            "MessageRateLimit": 5,
            "MessageRateSource": "User",
            **_SETUP_HOPS,
        },
        {
            "Name": f"Default {server}",
            "Server": server,
            "TransportRole": "HubTransport",
            "Bindings": ["0.0.0.0:2525", "[::]:2525"],
            "AuthMechanism": _FULL_AUTH,
            "PermissionGroups": ["ExchangeUsers", "ExchangeServers", "ExchangeLegacyServers"],
            "MaxRecipientsPerMessage": 5000,
            "MaxInboundConnectionPerSource": "unlimited",
            "MaxInboundConnectionPercentagePerSource": 100,
            "SizeEnabled": "EnabledWithoutValue",
            **_SETUP_HOPS,
        },
        {
            "Name": f"Client Proxy {server}",
            "Server": server,
            "TransportRole": "HubTransport",
            "Bindings": ["0.0.0.0:465", "[::]:465"],
            "AuthMechanism": _FULL_AUTH,
            "PermissionGroups": ["ExchangeUsers", "ExchangeServers"],
            "EnableAuthGSSAPI": True,
            "MessageRateLimit": 5,
            "MessageRateSource": "User",
            **_SETUP_HOPS,
        },
        {
            "Name": f"Mailbox Delivery {server}",
            "Server": server,
            "TransportRole": "MailboxDelivery",
            "Bindings": ["0.0.0.0:475", "[::]:475"],
            "AuthMechanism": ["ExchangeServer"],
            "PermissionGroups": ["ExchangeServers"],
            **_SETUP_HOPS,
        },
    ]
    if role is ServerRole.CLIENT_ACCESS:  # 2013's Client Access server: the Front End only
        return [c for c in connectors if c["TransportRole"] == "FrontendTransport"]
    return connectors


# exchange.md §3.2: what New-ReceiveConnector -<Usage> sets when the config does not say.
USAGE_DEFAULTS: dict[Usage | None, RawConnector] = {
    Usage.CLIENT: {
        "PermissionGroups": ["ExchangeUsers"],
        "AuthMechanism": ["Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS"],
        "MessageRateLimit": 5,
        "MessageRateSource": "User",
    },
    Usage.INTERNAL: {
        "PermissionGroups": ["ExchangeServers", "ExchangeLegacyServers"],
        "AuthMechanism": ["Tls", "ExchangeServer"],
        "SizeEnabled": "EnabledWithoutValue",
    },
    Usage.INTERNET: {"PermissionGroups": ["AnonymousUsers"], "AuthMechanism": ["Tls"]},
    Usage.PARTNER: {
        "PermissionGroups": ["Partners"],
        "AuthMechanism": ["Tls"],
        "DomainSecureEnabled": True,
    },
    Usage.CUSTOM: {"PermissionGroups": [], "AuthMechanism": ["Tls"]},
    # No Usage given: New-ReceiveConnector's defaults on a Mailbox server (exchange.md §3.2, e13).
    None: {
        "PermissionGroups": ["ExchangeUsers", "ExchangeServers", "ExchangeLegacyServers"],
        "AuthMechanism": _FULL_AUTH,
    },
}

EDGE_NO_USAGE_DEFAULTS: RawConnector = {
    "PermissionGroups": ["AnonymousUsers", "ExchangeServers", "Partners"],
    "AuthMechanism": ["Tls", "ExchangeServer"],
}
