"""Where mail for a recipient outside the organization goes, and what a send connector's TLS
settings make of a remote certificate (exchange.md §8.2, §4.3). Pure: the config and the facts
are passed in.

Routing (:func:`route_external`): the connector ``policy/sendrouting.select_send_connector``
picks for the recipient's domain on this server, as a :class:`~exchsim.policy.nexthop.NextHop`:

- a connector of this server (one of its SourceTransportServers) with DNS routing:
  ``DnsConnectorDelivery``, NextHopDomain the recipient's domain;
- a connector of this server with smart hosts: ``SmartHostConnectorDelivery``, NextHopDomain the
  smart hosts as Get-Queue shows them (``smarthost.lab.example,[127.0.10.70]``);
- a connector of other servers only: ``SmtpRelayToConnectorSourceServers``, NextHopDomain the
  connector's name (lower case); the message is relayed to one of its source servers over the
  intra-organization hop, where it is routed again;
- no connector: ``Unreachable`` (NextHopDomain ``unreachable domain``), with
  :data:`UNREACHABLE_REASON`; but when connectors match the
  domain and only their MaxMessageSize keeps the message out, an NDR with
  ``550 5.3.4 ROUTING.SizeLimit`` (``too_big``; exchange.md §8.2).

Destinations (:func:`destinations`): the smart hosts in order (a name through ``Dns.A``, or an
``[address]``), or the recipient domain's MX records by preference, each host through its
record's address or ``Dns.A``; a domain without MX records is its own mail host when ``Dns.A``
has it (RFC 5321 §5.1's implicit MX), else the records of the map's ``"*"`` MX entry, if any.
The port is the record's, else the connector's Port; the lab's port offset is added by the
caller, to every one of them. A name the lab's DNS does not know is a DNS failure:
:func:`dns_failure` (exchange.md §8.2).

The remote certificate (:func:`judge_remote_certificate`): TlsAuthLevel ``EncryptionOnly`` (or
none) checks nothing; ``CertificateValidation`` wants a chain to a trusted root, in date, for
server authentication and not revoked (tls/validation.py, the judge the receive side uses);
``DomainValidation`` also wants a certificate name matching TlsDomain, else the recipient's
domain. ``domain_secure`` is the Domain Security judgement (TLSSendDomainSecureList with
DomainSecureEnabled, exchange.md §4.3): the caller passes False for now; when it is True the
chain must be trusted and name the recipient's domain whatever TlsAuthLevel says.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exchsim.config.labnet import is_lab_address
from exchsim.config.model import Lab, ServerRole
from exchsim.config.sendconnector import (
    DnsMap,
    SendConnector,
    SmartHostAuthMechanism,
    TlsAuthLevel,
)
from exchsim.policy.nexthop import DeliveryType, NextHop
from exchsim.policy.sendrouting import select_send_connector, source_servers
from exchsim.tls.validation import ChainStatus, matches_domain

__all__ = [
    "UNREACHABLE_DOMAIN",
    "UNREACHABLE_REASON",
    "Destination",
    "OutboundRoute",
    "ProxyTo",
    "connectors_of",
    "destinations",
    "dns_failure",
    "edge_inbound",
    "is_edge",
    "judge_remote_certificate",
    "mailbox_next_hop",
    "parse_xproxyto",
    "route_external",
    "tls_required",
    "xproxyto_command",
]

UNREACHABLE_DOMAIN = "Unreachable Domain"
"""Get-Queue's NextHopDomain of the Unreachable queue."""

UNREACHABLE_REASON = "A matching connector cannot be found to route the external recipient"
"""The last error of a message in the Unreachable queue (Microsoft's Exchange 2007 troubleshooting
page for the Unreachable queue; exchange.md §8.2)."""


def dns_failure(name: str) -> str:
    """The queue's reason when the lab's DNS has no answer for ``name`` (exchange.md §8.2)."""
    del name  # Exchange's text does not name it; the log line of the attempt does
    return ("451 4.4.0 DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; "
            "nonexistent domain")


@dataclass(frozen=True, slots=True)
class OutboundRoute:
    """The next hop of a recipient outside the organization: the NextHop its queue is keyed by,
    the connector's name (None: Unreachable) and, for a relay, the source servers to try."""

    next_hop: NextHop
    connector: str | None = None
    relay_servers: tuple[str, ...] = ()
    too_big: bool = False
    """No connector because every one that matches the domain is smaller than the message: an
    NDR (``replies.ROUTING_SIZE_LIMIT``), not the Unreachable queue."""


def mailbox_next_hop(server: str) -> NextHop:
    """The next hop of a mailbox on ``server``: its Mailbox Transport Delivery, NextHopDomain
    the server's mailbox database as setup names one (``Mailbox Database`` and ten digits, here
    a checksum of the server name, so that it never changes)."""
    database = f"Mailbox Database {zlib.crc32(server.upper().encode()) % 10**10:010d}"
    return NextHop(DeliveryType.SMTP_DELIVERY_TO_MAILBOX, database.lower())


def _smart_host_domain(connector: SendConnector) -> str:
    return ",".join(connector.smart_hosts).lower()


def is_edge(lab: Lab, server: str) -> bool:
    """Whether ``server`` is an Edge Transport server of the config."""
    return any(s.role is ServerRole.EDGE and s.name.lower() == server.lower()
               for s in lab.servers)


def connectors_of(lab: Lab, server: str) -> tuple[SendConnector, ...]:
    """The send connectors routing on ``server`` may choose: on an Edge server only those it
    is a source server of (an Edge has what EdgeSync gave it: its own connectors), on a
    Mailbox server every connector of the organization (exchange.md §7.6, §8.2)."""
    if not is_edge(lab, server):
        return lab.send_connectors
    return tuple(c for c in lab.send_connectors
                 if server.lower() in {s.lower() for s in c.source_transport_servers})


def route_external(lab: Lab, server: str, domain: str, size: int | None) -> OutboundRoute:
    """The next hop of a recipient in ``domain`` that is no mailbox of the organization and in
    no Authoritative domain, routed on ``server`` for a message of ``size`` bytes. A connector
    of an Edge server, chosen on a Mailbox server, is ``SmtpRelayWithinAdSiteToEdge`` with the
    connector's name as NextHopDomain (Microsoft's queue page, exchange.md §7.6): the message
    goes to the Edge's port 25 over the Direct Trust hop."""
    mailbox_servers = [s.name for s in lab.servers if s.role is ServerRole.MAILBOX]
    connectors = connectors_of(lab, server)
    chosen = select_send_connector(connectors, domain, server, mailbox_servers, size)
    if chosen is None:
        too_big = size is not None and select_send_connector(
            connectors, domain, server, mailbox_servers, None) is not None
        return OutboundRoute(NextHop(DeliveryType.UNREACHABLE, UNREACHABLE_DOMAIN.lower()),
                             too_big=too_big)
    connector = chosen.connector
    if not chosen.local:
        others = tuple(s for s in source_servers(connector, mailbox_servers)
                       if s.lower() != server.lower())
        kind = DeliveryType.SMTP_RELAY_TO_CONNECTOR_SOURCE_SERVERS
        if others and all(is_edge(lab, s) for s in others):
            kind = DeliveryType.SMTP_RELAY_WITHIN_AD_SITE_TO_EDGE
        return OutboundRoute(NextHop(kind, connector.name.lower(), connector.name),
                             connector.name, others)
    if connector.uses_dns:
        return OutboundRoute(NextHop(DeliveryType.DNS_CONNECTOR_DELIVERY, domain.lower(),
                                     connector.name), connector.name)
    return OutboundRoute(NextHop(DeliveryType.SMART_HOST_CONNECTOR_DELIVERY,
                                 _smart_host_domain(connector), connector.name), connector.name)


def edge_inbound(lab: Lab, server: str) -> SendConnector | None:
    """On Edge server ``server``: the connector for the organization's own domains (an
    address space ``--``, exchange.md §7.6), the lowest cost then the lowest name; None when
    the Edge has none (the message is Unreachable)."""
    best: tuple[tuple[int, str], SendConnector] | None = None
    for connector in connectors_of(lab, server):
        costs = [s.cost for s in connector.address_spaces if s.domain == "--"]
        if not connector.enabled or not costs:
            continue
        key = (min(costs), connector.name.lower())
        if best is None or key < best[0]:
            best = (key, connector)
    return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class Destination:
    """One host to try: the name it was found by (``None`` for an ``[address]`` smart host), its
    address and its port before the lab's offset."""

    host: str | None
    address: str
    port: int


def destinations(connector: SendConnector, domain: str,
                 dns: DnsMap) -> tuple[list[Destination], str | None]:
    """The hosts to try in order, and the first name the lab's DNS could not answer (or None).
    Hosts that resolve are kept even when another did not; no host at all is a DNS failure."""
    found: list[Destination] = []
    missing: str | None = None
    if connector.uses_dns:
        records = dns.mx_of(domain)
        if not records:  # RFC 5321 §5.1: no MX, the domain itself is the host
            endpoint = dns.address_of(domain)
            if endpoint is not None:
                return [Destination(domain.lower(), endpoint.address,
                                    endpoint.port or connector.port)], None
            records = dns.wildcard_mx()  # the lab's "*" MX (config/sendconnector.py)
            if not records:
                return [], domain
        for record in records:
            endpoint = record.address or dns.address_of(record.name_exchange)
            if endpoint is None:
                missing = missing or record.name_exchange
                continue
            found.append(Destination(record.name_exchange.lower(), endpoint.address,
                                     endpoint.port or connector.port))
        return found, missing
    for host in connector.smart_hosts:
        if host.startswith("["):
            found.append(Destination(None, host[1:-1], connector.port))
            continue
        endpoint = dns.address_of(host)
        if endpoint is None:
            missing = missing or host
            continue
        found.append(Destination(host, endpoint.address, endpoint.port or connector.port))
    return found, missing


def tls_required(connector: SendConnector, domain_secure: bool) -> bool:
    """Whether the message may only go over TLS (RequireTLS, Domain Security, or basic
    authentication that requires TLS)."""
    return (connector.require_tls or domain_secure
            or connector.smart_host_auth_mechanism
            is SmartHostAuthMechanism.BASIC_AUTH_REQUIRE_TLS)


def judge_remote_certificate(connector: SendConnector, domain: str, status: ChainStatus | None,
                             names: Sequence[str], *, domain_secure: bool) -> str | None:
    """What is wrong with the remote server's certificate for this connector, or None when it
    passes (module docstring). ``status`` is the chain's validation status (None: the server
    showed no certificate); ``names`` its leaf's names."""
    level = connector.tls_auth_level if connector.require_tls else None
    if domain_secure:
        level = TlsAuthLevel.DOMAIN_VALIDATION
    if level is None or level is TlsAuthLevel.ENCRYPTION_ONLY:
        return None
    if status is None:
        return "the remote server presented no certificate"
    if not status.trusted:
        return f"the remote certificate failed validation: {status.value}"
    if level is TlsAuthLevel.DOMAIN_VALIDATION:
        wanted = domain if domain_secure else (connector.tls_domain or domain)
        if not matches_domain(names, wanted):
            shown = ", ".join(names) or "none"
            return (f"the remote certificate does not match the expected domain {wanted} "
                    f"(its names: {shown})")
    return None


# --- the outbound proxy: hub -> Front End 717 -> out (exchange.md §7.4) ------------------------

_DESTINATION = re.compile(r"(?P<host>[A-Za-z0-9.-]*)\[(?P<address>[0-9A-Fa-f.:]+)\]:(?P<port>\d+)")


@dataclass(frozen=True, slots=True)
class ProxyTo:
    """What XPROXYTO tells the Front End: where to go and the connector's settings."""

    destinations: tuple[Destination, ...]
    domain: str  # NEXTHOPDOMAIN: the recipient domain
    require_tls: bool = False
    tls_auth_level: TlsAuthLevel | None = None
    tls_domain: str | None = None
    ignore_starttls: bool = False
    force_helo: bool = False
    fqdn: str | None = None
    certificate_name: str | None = None
    connector: str = ""

    def as_connector(self) -> SendConnector:
        """These settings as a send connector, for the Front End's client."""
        return SendConnector.model_validate({
            "Name": self.connector or "Outbound Proxy", "AddressSpaces": ["*"],
            "RequireTLS": self.require_tls, "TlsAuthLevel": self.tls_auth_level,
            "TlsDomain": self.tls_domain, "IgnoreSTARTTLS": self.ignore_starttls,
            "ForceHELO": self.force_helo, "Fqdn": self.fqdn,
            "TlsCertificateName": self.certificate_name,
        })


def _xtext(value: str) -> str:
    return "".join(chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}"
                   for b in value.encode("utf-8"))


def _unxtext(value: str) -> str:
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def xproxyto_command(connector: SendConnector, domain: str,
                     hosts: Sequence[Destination], session_id: str) -> str:
    """The hub's XPROXYTO for a FrontendProxyEnabled connector (exchange.md §7.4): the
    destinations the hub resolved (``host[address]:port``, the port before the lab's offset)
    and the connector's settings, by the names of Exchange's XPROXYTO parameters."""
    dests = ",".join(f"{d.host or ''}[{d.address}]:{d.port}" for d in hosts)
    level = connector.tls_auth_level.value if connector.tls_auth_level else ""
    parts = [f"DESTINATIONS={dests}", f"PORT={connector.port}",
             f"NEXTHOPDOMAIN={_xtext(domain)}", f"REQUIRETLS={connector.require_tls}",
             f"TLSAUTHLEVEL={level}", f"TLSDOMAINS={_xtext(connector.tls_domain or '')}",
             f"SHOULDSKIPTLS={connector.ignore_starttls}", f"FORCEHELO={connector.force_helo}",
             f"FQDN={_xtext(connector.fqdn or '')}",
             f"CERTSUBJECT={_xtext(connector.tls_certificate_name or '')}",
             f"CONNECTOR={_xtext(connector.name)}", f"SESSIONID={session_id}", "LAST=True"]
    return "XPROXYTO " + " ".join(parts)


def parse_xproxyto(params: Mapping[str, str],
                   lab_hosts: frozenset[str] = frozenset()) -> ProxyTo | None:
    """XPROXYTO's keyword arguments -> :class:`ProxyTo`; None when they are not usable (no
    destination, an address outside 127.0.0.0/8 and ``lab_hosts`` (the lab's hosts of --hosts,
    config/labnet.py), a bad port or TLS level)."""
    hosts: list[Destination] = []
    for item in params.get("DESTINATIONS", "").split(","):
        found = _DESTINATION.fullmatch(item)
        if found is None:
            return None
        try:
            address = ipaddress.ip_address(found["address"])
        except ValueError:
            return None
        port = int(found["port"])
        if not is_lab_address(address, lab_hosts) or not 1 <= port <= 65535:
            return None
        hosts.append(Destination(found["host"] or None, str(address), port))
    level_text = params.get("TLSAUTHLEVEL", "")
    levels = {level.value.lower(): level for level in TlsAuthLevel}
    if level_text and level_text.lower() not in levels:
        return None

    def flag(name: str) -> bool:
        return params.get(name, "False").lower() == "true"

    def text(name: str) -> str | None:
        return _unxtext(params.get(name, "")) or None

    return ProxyTo(tuple(hosts), text("NEXTHOPDOMAIN") or "", flag("REQUIRETLS"),
                   levels.get(level_text.lower()), text("TLSDOMAINS"), flag("SHOULDSKIPTLS"),
                   flag("FORCEHELO"), text("FQDN"), text("CERTSUBJECT"),
                   text("CONNECTOR") or "")
