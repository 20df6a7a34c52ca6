"""Send connectors and the lab's DNS, as data (exchange.md §8.2, §4.3).

``SendConnector`` carries New-SendConnector's parameter names and defaults. One choice where
Microsoft's pages disagree (exchange.md §9.6): MaxMessageSize defaults to 25 MB, the value
the New-SendConnector page gives for the cmdlet that creates the object (the message size
limits page says 10 MB).

An address space is ``Type:Domain;Cost`` as Get-SendConnector prints it (``SMTP:*.contoso.com;1``);
the plain forms ``*.contoso.com`` and ``contoso.com;5`` mean type SMTP and cost 1 when omitted.

``DnsMap`` is the lab's resolver, so that nothing leaves the lab: ``Dns.MX`` maps a domain to
its mail exchangers (preference, host name, and the loopback ``address[:port]`` the host has);
``Dns.A`` maps a host name (a smart host, an MX host) to a loopback ``address[:port]``. A port
is the lab's addition (real DNS has none): several lab MTAs may share one address. An ``MX``
entry ``"*"`` (exchsim's own) answers for every domain that has neither an MX nor an A record
of its own (``destinations`` in policy/outbound.py).

Rules between fields and objects are in ``validate/sendconnector.py``; the choice of a
connector for a domain is ``policy/sendrouting.py``.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer

from exchsim.config.base import (
    MB,
    Bool,
    ByteLimit,
    ExchangeObject,
    TimeSpan,
    _enum_ci,
    _split_list,
)
from exchsim.config.enums import ProtocolLoggingLevel
from exchsim.config.labnet import is_lab_address
from exchsim.config.syntax import is_host_name

__all__ = [
    "AddressSpace",
    "Credential",
    "DnsMap",
    "Endpoint",
    "MxRecord",
    "SendConnector",
    "SendUsage",
    "SmartHostAuthMechanism",
    "TlsAuthLevel",
    "format_address_space",
    "parse_address_space",
    "parse_endpoint",
]


class TlsAuthLevel(enum.StrEnum):
    """How much of the remote certificate is checked (exchange.md §4.3)."""

    ENCRYPTION_ONLY = "EncryptionOnly"
    CERTIFICATE_VALIDATION = "CertificateValidation"
    DOMAIN_VALIDATION = "DomainValidation"


class SmartHostAuthMechanism(enum.StrEnum):
    """How the connector authenticates to its smart hosts (exchange.md §8.2)."""

    NONE = "None"
    BASIC_AUTH = "BasicAuth"
    BASIC_AUTH_REQUIRE_TLS = "BasicAuthRequireTLS"
    EXCHANGE_SERVER = "ExchangeServer"
    EXTERNAL_AUTHORITATIVE = "ExternalAuthoritative"


class SendUsage(enum.StrEnum):
    """New-SendConnector's -Usage (exchange.md §8.2)."""

    CUSTOM = "Custom"
    INTERNAL = "Internal"
    INTERNET = "Internet"
    PARTNER = "Partner"


@dataclass(frozen=True, slots=True)
class AddressSpace:
    """One address space: type (SMTP), domain (``*``, ``*.contoso.com``, ``contoso.com``), cost."""

    type: str
    domain: str
    cost: int

    def format(self) -> str:
        return format_address_space(self)


_SPACE_EXPECTED = ("an address space like SMTP:*.contoso.com;1, *.contoso.com, contoso.com;5 or * "
                   "(type SMTP, a domain, optionally '*.' before it, cost 1 to 100; "
                   "exchange.md §8.2)")


def parse_address_space(value: Any) -> Any:
    """``[SMTP:]domain[;cost]`` -> ``AddressSpace``; anything else is left for pydantic's error."""
    if isinstance(value, AddressSpace) or not isinstance(value, str):
        return value
    text = value.strip()
    kind = "SMTP"
    if ":" in text:
        kind, _, text = text.partition(":")
        if kind.strip().upper() != "SMTP":
            raise ValueError(f"{value!r} is not allowed: only the type SMTP is supported; "
                             f"expected {_SPACE_EXPECTED}")
        kind = "SMTP"
    cost = 1
    if ";" in text:
        text, _, cost_text = text.partition(";")
        if not cost_text.strip().isdigit() or not 1 <= int(cost_text) <= 100:
            raise ValueError(f"{value!r} is not allowed: expected {_SPACE_EXPECTED}")
        cost = int(cost_text)
    domain = text.strip().lower()
    bare = domain[2:] if domain.startswith("*.") else domain
    if domain == "--":  # an Edge subscription's inbound space (config/edgesync.py)
        return AddressSpace(kind, domain, cost)
    if domain != "*" and not is_host_name(bare):
        raise ValueError(f"{value!r} is not allowed: expected {_SPACE_EXPECTED}")
    return AddressSpace(kind, domain, cost)


def format_address_space(space: AddressSpace) -> str:
    return f"{space.type}:{space.domain};{space.cost}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A loopback address and port of the lab (a DNS answer or a smart host given by address)."""

    address: str
    port: int | None

    def format(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return host if self.port is None else f"{host}:{self.port}"


_ENDPOINT_EXPECTED = ("a loopback address with an optional port, like 127.0.10.60 or "
                      "127.0.10.60:2525 (the lab never leaves 127.0.0.0/8)")


def parse_endpoint(value: Any) -> Any:
    """``127.0.10.60[:port]`` (``[::1]:25`` for IPv6) -> ``Endpoint``, loopback only."""
    if isinstance(value, Endpoint) or not isinstance(value, str):
        return value
    text = value.strip()
    port: int | None = None
    host = text
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"expected {_ENDPOINT_EXPECTED}")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"expected {_ENDPOINT_EXPECTED}")
        port = int(port_text)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected {_ENDPOINT_EXPECTED}") from None
    if not is_lab_address(ip):  # or a host of --hosts (config/labnet.py)
        raise ValueError(f"{host} is not a loopback address: expected {_ENDPOINT_EXPECTED}")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not allowed: expected 1 to 65535")
    return Endpoint(str(ip), port)


_SMART_HOST_EXPECTED = ("a host name like smarthost.lab.example or an IP address in brackets "
                        "like [127.0.10.70] (exchange.md §8.2)")


def _smart_host(value: Any) -> Any:
    """A smart host as Exchange prints it: a host name, or ``[address]``; a bare address is
    accepted and written with brackets."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text == "--":  # the subscribed site's Mailbox servers (config/edgesync.py)
        return text
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ip = ipaddress.ip_address(inner)
    except ValueError:
        pass
    else:  # the lab's own addresses only, as a Dns answer (parse_endpoint)
        if not is_lab_address(ip):
            raise ValueError(f"{ip} is not a loopback address (nor a host of --hosts): "
                             f"expected {_SMART_HOST_EXPECTED}")
        return f"[{ip}]"
    if text.startswith("[") or not is_host_name(text):
        raise ValueError(f"expected {_SMART_HOST_EXPECTED}")
    return text.lower()


def _credential(value: Any) -> Any:
    """``user:password`` or a mapping with UserName and Password."""
    if isinstance(value, str) and ":" in value:
        user, _, password = value.partition(":")
        return {"UserName": user, "Password": password}
    return value


AddressSpaceValue = Annotated[
    AddressSpace, BeforeValidator(parse_address_space), PlainSerializer(format_address_space)
]
EndpointValue = Annotated[
    Endpoint, BeforeValidator(parse_endpoint), PlainSerializer(Endpoint.format)
]
SmartHost = Annotated[str, BeforeValidator(_smart_host)]


#: Multi-valued parameters: a YAML list, or ``a, b`` as Exchange prints them.
_LIST = BeforeValidator(_split_list)


class Credential(ExchangeObject):
    """AuthenticationCredential (Get-Credential's PSCredential): the user and the password."""

    user_name: str = Field(alias="UserName", min_length=1)
    password: str = Field(alias="Password", min_length=1)


class SendConnector(ExchangeObject):
    """One send connector, with New-SendConnector's names and defaults (exchange.md §8.2, §4.3)."""

    name: str = Field(alias="Name", min_length=1, max_length=64)
    address_spaces: Annotated[tuple[AddressSpaceValue, ...], _LIST] = Field(
        alias="AddressSpaces", min_length=1)
    usage: Annotated[SendUsage, _enum_ci(SendUsage)] = Field(alias="Usage",
                                                             default=SendUsage.CUSTOM)
    enabled: Bool = Field(alias="Enabled", default=True)
    dns_routing_enabled: Bool | None = Field(alias="DNSRoutingEnabled", default=None)
    """``None`` in the file: true unless SmartHosts are given (the cmdlet's default)."""
    smart_hosts: Annotated[tuple[SmartHost, ...], _LIST] = Field(alias="SmartHosts", default=())
    port: int = Field(alias="Port", default=25, ge=1, le=65535)
    source_transport_servers: Annotated[tuple[str, ...], _LIST] = Field(
        alias="SourceTransportServers", default=())
    """None written: every Mailbox server of the lab (New-SendConnector's default is the server
    it runs on; a config has no such server, so exchsim takes them all)."""
    fqdn: str | None = Field(alias="Fqdn", default=None)
    force_helo: Bool = Field(alias="ForceHELO", default=False)
    require_tls: Bool = Field(alias="RequireTLS", default=False)
    tls_auth_level: Annotated[TlsAuthLevel, _enum_ci(TlsAuthLevel)] | None = Field(
        alias="TlsAuthLevel", default=None)
    tls_domain: str | None = Field(alias="TlsDomain", default=None)
    tls_certificate_name: str | None = Field(
        alias="TlsCertificateName", default=None)
    ignore_starttls: Bool = Field(alias="IgnoreSTARTTLS", default=False)
    domain_secure_enabled: Bool = Field(alias="DomainSecureEnabled", default=False)
    frontend_proxy_enabled: Bool = Field(alias="FrontendProxyEnabled", default=False)
    smart_host_auth_mechanism: Annotated[
        SmartHostAuthMechanism, _enum_ci(SmartHostAuthMechanism)
    ] = Field(alias="SmartHostAuthMechanism", default=SmartHostAuthMechanism.NONE)
    authentication_credential: Annotated[Credential, BeforeValidator(_credential)] | None = (
        Field(alias="AuthenticationCredential", default=None))
    max_message_size: ByteLimit = Field(alias="MaxMessageSize", default=25 * MB)
    """25 MB: the New-SendConnector page's value (exchange.md §9.6); ``Unlimited`` is None."""
    protocol_logging_level: Annotated[ProtocolLoggingLevel, _enum_ci(ProtocolLoggingLevel)] = (
        Field(alias="ProtocolLoggingLevel", default=ProtocolLoggingLevel.NONE))
    connection_inactivity_timeout: TimeSpan = Field(
        alias="ConnectionInactivityTimeOut", default=datetime.timedelta(minutes=10),
        ge=datetime.timedelta(seconds=1), le=datetime.timedelta(days=1))
    comment: str | None = Field(alias="Comment", default=None)

    @property
    def identity(self) -> str:
        """Send connectors are organization objects: the Identity is the name."""
        return self.name

    @property
    def uses_dns(self) -> bool:
        """DNS routing: as written, or (not written) when there are no smart hosts."""
        if self.dns_routing_enabled is None:
            return not self.smart_hosts
        return self.dns_routing_enabled


class MxRecord(ExchangeObject):
    """One MX answer of the lab's DNS: Preference, NameExchange (as Resolve-DnsName prints
    them) and, optionally, the host's address (else ``Dns.A`` must have the host)."""

    preference: int = Field(alias="Preference", default=10, ge=0, le=65535)
    name_exchange: str = Field(alias="NameExchange", min_length=1)
    address: EndpointValue | None = Field(alias="Address", default=None)


def _mx_list(value: Any) -> Any:
    return _split_list(value) if isinstance(value, str) else value


class DnsMap(ExchangeObject):
    """The lab's resolver: ``MX`` (domain -> records) and ``A`` (host name -> endpoint)."""

    mx: dict[str, Annotated[tuple[MxRecord, ...], BeforeValidator(_mx_list)]] = Field(
        alias="MX", default_factory=dict)
    a: dict[str, EndpointValue] = Field(alias="A", default_factory=dict)

    def mx_of(self, domain: str) -> tuple[MxRecord, ...]:
        """The MX records of ``domain``, lowest preference first (ties: as written)."""
        for name, records in self.mx.items():
            if name.lower().rstrip(".") == domain.lower().rstrip("."):
                return tuple(sorted(records, key=lambda r: r.preference))
        return ()

    def wildcard_mx(self) -> tuple[MxRecord, ...]:
        """The records of the ``"*"`` entry (exchsim's own: the MX of every domain the lab's
        DNS has no MX or A record for, e.g. the internet sink in a lab whose send connectors
        route by DNS; none when the map has no such entry)."""
        return self.mx_of("*")

    def address_of(self, host: str) -> Endpoint | None:
        """The A record of ``host``, if the lab's DNS has one."""
        for name, endpoint in self.a.items():
            if name.lower().rstrip(".") == host.lower().rstrip("."):
                return endpoint
        return None
