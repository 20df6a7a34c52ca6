"""Send connectors and the lab's DNS: the rules New-/Set-SendConnector apply (exchange.md §8.2
and exchange.md §4.3), and the ``Dns`` map (loopback only; every host a connector or an MX
record names has an address).

``validate_send_connectors`` validates each entry alone (pydantic), then its rules across
fields, then the rules between objects: unique names, SourceTransportServers naming Mailbox or
Edge servers of the config, smart host names known to the lab's DNS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from exchsim.config.issues import IssueLog, Place, label, place, show
from exchsim.config.model import Server, ServerRole
from exchsim.config.prose import validate
from exchsim.config.sendconnector import (
    DnsMap,
    SendConnector,
    SmartHostAuthMechanism,
    TlsAuthLevel,
)
from exchsim.config.syntax import is_domain_name, is_host_name

__all__ = ["connector_rules", "validate_dns", "validate_send_connectors"]

_SECTION = "SendConnectors"


def _path(index: int, name: str, key: str) -> str:
    return f"{_SECTION}[{index}] ({name}).{key}"


def connector_rules(c: SendConnector) -> list[tuple[str, object, str]]:
    """(key, value, message) of every rule across the fields of one connector that it breaks,
    in the order the cmdlet's checks are listed in exchange.md §8.2 and §4.3."""
    found: list[tuple[str, object, str]] = []
    if c.smart_hosts and c.dns_routing_enabled:
        found.append(("DNSRoutingEnabled", True, "true is not allowed with SmartHosts: a "
                      "connector routes through DNS or through smart hosts, not both; set "
                      "DNSRoutingEnabled to false or remove SmartHosts (exchange.md §8.2)"))
    if not c.smart_hosts and c.dns_routing_enabled is False:
        found.append(("SmartHosts", [], "at least one smart host is required when "
                      "DNSRoutingEnabled is false (exchange.md §8.2)"))
    if c.fqdn is not None and not is_host_name(c.fqdn):
        found.append(("Fqdn", c.fqdn, f"{show(c.fqdn)} is not allowed: expected a host name "
                      "like mail.contoso.com, the name the connector says in EHLO "
                      "(exchange.md §4.3)"))
    if c.tls_domain is not None and not is_domain_name(c.tls_domain):
        found.append(("TlsDomain", c.tls_domain, f"{show(c.tls_domain)} is not allowed: "
                      "expected a domain like partner.example or *.partner.example "
                      "(exchange.md §4.3)"))
    level = c.tls_auth_level
    if c.tls_domain is not None and level is not TlsAuthLevel.DOMAIN_VALIDATION:
        found.append(("TlsDomain", c.tls_domain, "TlsDomain can only be set with TlsAuthLevel "
                      "DomainValidation (exchange.md §4.3)"))
    if level is TlsAuthLevel.DOMAIN_VALIDATION and c.smart_hosts and c.tls_domain is None:
        found.append(("TlsDomain", None, "TlsDomain is required with TlsAuthLevel "
                      "DomainValidation on a connector with SmartHosts (exchange.md §4.3)"))
    if c.ignore_starttls and c.require_tls:
        found.append(("RequireTLS", True, "true is not allowed with IgnoreSTARTTLS true: a "
                      "connector that ignores STARTTLS cannot require TLS (exchange.md §4.3)"))
    if c.ignore_starttls and level is not None:
        found.append(("TlsAuthLevel", level.value, f"{show(level.value)} is not allowed with "
                      "IgnoreSTARTTLS true (exchange.md §4.3)"))
    if level is not None and not c.require_tls and not c.ignore_starttls:
        found.append(("TlsAuthLevel", level.value, f"{show(level.value)} is not allowed "
                      "without RequireTLS true: TlsAuthLevel needs RequireTLS "
                      "(exchange.md §4.3)"))
    if c.domain_secure_enabled and not c.uses_dns:
        found.append(("DomainSecureEnabled", True, "true is not allowed on a smart-host "
                      "connector: Domain Security needs DNSRoutingEnabled true "
                      "(exchange.md §4.3)"))
    if c.domain_secure_enabled and c.ignore_starttls:
        found.append(("DomainSecureEnabled", True, "true is not allowed with IgnoreSTARTTLS "
                      "true (exchange.md §4.3)"))
    mechanism = c.smart_host_auth_mechanism
    basic = (SmartHostAuthMechanism.BASIC_AUTH, SmartHostAuthMechanism.BASIC_AUTH_REQUIRE_TLS)
    if mechanism in basic and c.authentication_credential is None:
        found.append(("AuthenticationCredential", None, "AuthenticationCredential (UserName "
                      f"and Password) is required with SmartHostAuthMechanism {mechanism.value} "
                      "(exchange.md §8.2)"))
    if mechanism is not SmartHostAuthMechanism.NONE and not c.smart_hosts:
        found.append(("SmartHostAuthMechanism", mechanism.value, f"{show(mechanism.value)} is "
                      "not allowed without SmartHosts: it is how the connector authenticates "
                      "to its smart hosts; expected None (exchange.md §8.2)"))
    return found


def validate_send_connectors(
    raw: object, servers: Sequence[Server], dns: DnsMap | None, log: IssueLog
) -> list[SendConnector]:
    """Validate ``SendConnectors`` (absent: none, as after setup, exchange.md §8.2)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        log.add(_SECTION, raw, f"{show(raw)} is not allowed: expected a list of send "
                "connectors", order=place(_SECTION))
        return []
    by_name = {s.name.lower(): s for s in servers}
    valid: list[SendConnector] = []
    names: dict[str, int] = {}
    for index, item in enumerate(raw):
        order = place(_SECTION, index)
        connector = validate(SendConnector, item, f"{_SECTION}[{index}]{label(item, _SECTION)}",
                             log, order=order)
        if connector is None:
            continue
        ok = True
        for key, value, message in connector_rules(connector):
            log.add(_path(index, connector.name, key), value, message, order=order)
            ok = False
        taken = names.get(connector.name.lower())
        if taken is not None:
            log.add(_path(index, connector.name, "Name"), connector.name,
                    f"{show(connector.name)} is already the name of {_SECTION}[{taken}]: send "
                    "connector names must be unique in the organization", order=order)
            ok = False
        names.setdefault(connector.name.lower(), index)
        for name in connector.source_transport_servers:
            # Every server of the config is a Mailbox or an Edge server (its Role's type).
            if name.lower() not in by_name:
                allowed = ", ".join(s.name for s in servers)
                log.add(_path(index, connector.name, "SourceTransportServers"), name,
                        f"{show(name)} is not allowed: not a server of this config; expected "
                        f"one of {allowed} (Mailbox or Edge servers, exchange.md §8.2)",
                        order=order, needs=[("ServerName", name)])
                ok = False
        ok = _edgesync_values(connector, index, by_name, log, order) and ok
        if dns is not None:
            for host in connector.smart_hosts:
                if host != "--" and not host.startswith("[") and dns.address_of(host) is None:
                    log.add(_path(index, connector.name, "SmartHosts"), host,
                            f"{show(host)} is not allowed: the lab's DNS has no A record for "
                            "it; add it under Dns.A or write the smart host as [address]",
                            order=order)
                    ok = False
        if ok:
            valid.append(connector)
    return valid


def _edgesync_values(connector: SendConnector, index: int, by_name: Mapping[str, Server],
                     log: IssueLog, order: Place) -> bool:
    """The EdgeSync values ``--`` (the address space of the organization's domains, the smart
    host of the subscribed site's Mailbox servers, config/edgesync.py) belong to a connector of
    Edge servers, the smart host alone: elsewhere no domain matches ``--`` and no DNS answers
    it, so they would route nothing or fail every message."""
    sources = [by_name.get(name.lower()) for name in connector.source_transport_servers]
    on_edge = bool(sources) and all(s is not None and s.role is ServerRole.EDGE for s in sources)
    ok = True
    why = ("is EdgeSync's (exchange.md §7.6): expected it only on a connector whose "
           "SourceTransportServers are Edge servers")
    if not on_edge and any(space.domain == "--" for space in connector.address_spaces):
        log.add(_path(index, connector.name, "AddressSpaces"), "--",
                f"'--' (the organization's domains) is not allowed here: it {why}", order=order)
        ok = False
    if "--" in connector.smart_hosts:
        if not on_edge:
            log.add(_path(index, connector.name, "SmartHosts"), "--", "'--' (the site's "
                    f"Mailbox servers) is not allowed here: it {why}", order=order)
            ok = False
        elif len(connector.smart_hosts) > 1:
            log.add(_path(index, connector.name, "SmartHosts"), ", ".join(connector.smart_hosts),
                    "'--' (the site's Mailbox servers) is not allowed beside other smart hosts: "
                    "expected it alone (exchange.md §7.6)", order=order)
            ok = False
    return ok


def validate_dns(raw: object, log: IssueLog) -> DnsMap | None:
    """Validate ``Dns`` (absent: empty): addresses are loopback (the types check it), domains
    and host names have their shapes, and every MX host has an address."""
    order = place("Dns")
    dns = validate(DnsMap, {} if raw is None else raw, "Dns", log, order=order)
    if dns is None:
        return None
    ok = True
    for domain, records in dns.mx.items():
        if domain != "*" and not is_host_name(domain.rstrip(".")):
            log.add(f"Dns.MX.{domain}", domain, f"{show(domain)} is not allowed: expected a "
                    "domain name like partner.example, or * (every other domain)", order=order)
            ok = False
        for i, record in enumerate(records):
            if not is_host_name(record.name_exchange.rstrip(".")):
                log.add(f"Dns.MX.{domain}[{i}].NameExchange", record.name_exchange,
                        f"{show(record.name_exchange)} is not allowed: expected a host name "
                        "like mail.partner.example", order=order)
                ok = False
            elif record.address is None and dns.address_of(record.name_exchange) is None:
                log.add(f"Dns.MX.{domain}[{i}].NameExchange", record.name_exchange,
                        f"{show(record.name_exchange)} has no address: give the record an "
                        "Address or add the host under Dns.A", order=order)
                ok = False
    for host in dns.a:
        if not is_host_name(host.rstrip(".")):
            log.add(f"Dns.A.{host}", host, f"{show(host)} is not allowed: expected a host name "
                    "like smarthost.lab.example", order=order)
            ok = False
    return dns if ok else None
