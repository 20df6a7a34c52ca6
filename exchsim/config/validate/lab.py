"""The ``Lab`` settings: exchsim's own, not Exchange's (the internet sink, retry interval)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from exchsim.config.issues import IssueLog, Place, place, show
from exchsim.config.labnet import is_lab_address
from exchsim.config.model import Lab, LabSettings, Server
from exchsim.config.prose import validate
from exchsim.config.serviceaddr import SERVICE_KEYS

__all__ = ["validate_lab", "validate_partners"]


def validate_lab(raw: object, servers: Sequence[tuple[int, Server]], log: IssueLog) -> (
    LabSettings | None
):
    """Validate ``Lab`` (absent: every default); the internet sink needs an address of its own."""
    order = place("Lab")
    settings = validate(LabSettings, {} if raw is None else raw, "Lab", log, order=order)
    if settings is None:
        return None
    sink = settings.internet_sink
    ip = ipaddress.ip_address(sink.address)  # the type checked it
    if not is_lab_address(ip):  # the send connectors deliver there (config/implied.py)
        log.add("Lab.InternetSink.Address", sink.address, f"{show(sink.address)} is not "
                "allowed: the internet sink listens on loopback only (127.0.0.0/8 or ::1, or "
                "a host of --hosts)", order=order)
    for i, server in servers:
        if (what := _which(server, ip)) is not None:
            log.add("Lab.InternetSink.Address", sink.address,
                    f"{show(sink.address)} is not allowed: it is the {what} of "
                    f"Servers[{i}] ({server.name}); the internet sink needs its own",
                    order=order)
    _validate_crl_server(settings, servers, log, order)
    return settings


def _validate_crl_server(settings: LabSettings, servers: Sequence[tuple[int, Server]],
                         log: IssueLog, order: Place) -> None:
    """The CRL server listens on loopback, on an address of its own (not a server's), and not
    on the internet sink's address and port."""
    crl = settings.crl_server
    ip = ipaddress.ip_address(crl.address)  # the type checked it
    key = "Lab.CrlServer.Address"
    if not is_lab_address(ip):  # or a host of --hosts (config/labnet.py)
        log.add(key, crl.address, f"{show(crl.address)} is not allowed: the lab serves its "
                "CRLs on loopback only (127.0.0.0/8 or ::1, or a host of --hosts)", order=order)
        return
    for i, server in servers:
        if (what := _which(server, ip)) is not None:
            log.add(key, crl.address,
                    f"{show(crl.address)} is not allowed: it is the {what} of "
                    f"Servers[{i}] ({server.name}); the CRL server needs its own", order=order)
            return
    sink = settings.internet_sink
    if _same(sink.address, ip) and sink.port == crl.port:
        log.add("Lab.CrlServer.Port", crl.port,
                f"{crl.port} is not allowed: the internet sink listens on "
                f"{sink.address}:{sink.port}", order=order)


def _which(server: Server, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Which of ``server``'s addresses ``ip`` is: its ``Address``, one of its services' own
    (``ExchsimServiceAddresses``, config/serviceaddr.py), or None."""
    if _same(server.address, ip):
        return "Address"
    for key in SERVICE_KEYS:
        if _same(server.service_address(key), ip):
            return f"{key} address (ExchsimServiceAddresses)"
    return None


def _same(address: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(address) == ip
    except ValueError:
        return False


def validate_partners(servers: Sequence[Server], settings: LabSettings, partners: Sequence[Lab],
                      log: IssueLog) -> None:
    """The organizations of ``Lab.Partners`` run beside this one, in the same data directory:
    no partner names partners of its own, and every server of all of them has its own Name
    (its queue, logs and certificate store are by name) and its own Address."""
    order = place("Lab")
    names = {s.name.lower(): "this file" for s in servers}
    addresses = {a: f"{s.name} of this file" for s in servers for a in s.addresses}
    for index, partner in enumerate(partners):
        key = f"Lab.Partners[{index}].Config"
        where = settings.partners[index].config
        if partner.partners:
            log.add(key, where, f"{show(where)} is not allowed: that config names partners "
                    "of its own (Lab.Partners); a partner's config may not", order=order)
        for server in partner.servers:
            taken = names.get(server.name.lower())
            if taken is not None:
                log.add(key, where, f"{show(where)} is not allowed: its server "
                        f"{server.name} has the Name of a server of {taken}; every server of "
                        "the lab needs its own Name", order=order)
            for address in sorted(server.addresses):  # its Address and its services'
                taken = addresses.get(address)
                if taken is not None:
                    log.add(key, where, f"{show(where)} is not allowed: its server "
                            f"{server.name} has the address {address} of {taken}; every "
                            "server of the lab needs its own addresses", order=order)
                addresses.setdefault(address, f"{server.name} of {where}")
            names.setdefault(server.name.lower(), where)
