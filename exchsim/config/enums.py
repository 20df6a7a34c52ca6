"""The enumerations of the organization's objects (Exchange's parameter values)."""

from __future__ import annotations

import enum


class AuthMechanism(enum.StrEnum):
    """ReceiveConnector.AuthMechanism flags (exchange.md §3.1)."""

    NONE = "None"
    TLS = "Tls"
    INTEGRATED = "Integrated"
    BASIC_AUTH = "BasicAuth"
    BASIC_AUTH_REQUIRE_TLS = "BasicAuthRequireTLS"
    EXCHANGE_SERVER = "ExchangeServer"
    EXTERNAL_AUTHORITATIVE = "ExternalAuthoritative"


class PermissionGroup(enum.StrEnum):
    """ReceiveConnector.PermissionGroups flags (exchange.md §3.1, §3.6)."""

    NONE = "None"
    ANONYMOUS_USERS = "AnonymousUsers"
    EXCHANGE_USERS = "ExchangeUsers"
    EXCHANGE_SERVERS = "ExchangeServers"
    EXCHANGE_LEGACY_SERVERS = "ExchangeLegacyServers"
    PARTNERS = "Partners"
    CUSTOM = "Custom"


class TransportRole(enum.StrEnum):
    """The transport service a receive connector belongs to.

    ``FrontendTransport`` and ``HubTransport`` are Exchange's values. ``MailboxDelivery``
    (the implicit 475 listener) and ``EdgeTransport`` (connectors of an Edge server, which
    has no TransportRole parameter) are exchsim's names for services Exchange does not let
    you name.
    """

    FRONTEND = "FrontendTransport"
    HUB = "HubTransport"
    MAILBOX_DELIVERY = "MailboxDelivery"
    EDGE = "EdgeTransport"


class Usage(enum.StrEnum):
    CLIENT = "Client"
    INTERNAL = "Internal"
    INTERNET = "Internet"
    PARTNER = "Partner"
    CUSTOM = "Custom"


class SizeEnabled(enum.StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    ENABLED_WITHOUT_VALUE = "EnabledWithoutValue"


class ProtocolLoggingLevel(enum.StrEnum):
    NONE = "None"
    VERBOSE = "Verbose"


class MessageRateSource(enum.StrEnum):
    NONE = "None"
    IP_ADDRESS = "IPAddress"
    USER = "User"
    ALL = "All"


class DomainType(enum.StrEnum):
    AUTHORITATIVE = "Authoritative"
    INTERNAL_RELAY = "InternalRelay"
    EXTERNAL_RELAY = "ExternalRelay"


class ServerRole(enum.StrEnum):
    """A server's Exchange role: ``ClientAccess`` is Exchange 2013's Client Access server
    (the Front End Transport service only, exchange.md §7.9)."""

    MAILBOX = "Mailbox"
    EDGE = "Edge"
    CLIENT_ACCESS = "ClientAccess"
