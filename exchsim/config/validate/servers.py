"""Servers: each validated alone, then unique by name and by address.

Subjects recorded for the cascade rule: ``("ServerName", name)`` when an entry naming a server
cannot be used (so that references to that name are not reported as unknown), and
``("Server", name, key)`` for a usable server whose Fqdn or Address has the wrong shape.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, MutableMapping

from exchsim.config.issues import IssueLog, Place, label, place, show
from exchsim.config.labnet import is_lab_address
from exchsim.config.model import Server, ServerRole, misshapen
from exchsim.config.prose import validate
from exchsim.config.serviceaddr import SERVICE_KEYS, role_services
from exchsim.config.windows import SUPPORTED_OS

__all__ = ["validate_server", "validate_servers"]


def validate_server(
    raw: object,
    index: int,
    log: IssueLog,
    *,
    names: Mapping[str, int] | None = None,
    addresses: MutableMapping[str, int] | None = None,
) -> Server | None:
    """Validate ``Servers[index]``; return it if it can be used by the rest of the config.

    ``names`` and ``addresses`` (lower-cased name / address -> index) are the servers already
    accepted: a server that repeats one is reported and not returned. ``addresses`` gains this
    server's address. A value of the wrong shape (Fqdn, Address) is reported and recorded as
    failed, and the server is still returned.
    """
    order = place("Servers", index)
    if isinstance(raw, dict):
        version = raw.get("Version")
        if isinstance(version, int | float) and not isinstance(version, bool):
            raw = {**raw, "Version": f"{float(version):.1f}"}
    server = validate(Server, raw, f"Servers[{index}]{label(raw, 'Servers')}", log, order=order)
    if server is None:
        if isinstance(raw, dict) and isinstance(raw.get("Name"), str):
            log.fail("ServerName", raw["Name"])
        return None
    path = f"Servers[{index}] ({server.name})"
    ok = True
    taken = (names or {}).get(server.name.lower())
    if taken is not None:
        log.add(
            f"{path}.Name",
            server.name,
            f"'{server.name}' is already the name of Servers[{taken}]: server names must be "
            "unique",
            order=order,
        )
        ok = False
    bad: list[str] = []
    for name, value, shape in misshapen(server):
        key = Server.model_fields[name].alias or name
        log.add(f"{path}.{key}", value, f"{show(value)} is not allowed: expected {shape.expected}",
                order=order)
        bad.append(key)
    for name, file_size, directory_size, section in (
            ("ReceiveProtocolLog", server.receive_protocol_log_max_file_size,
             server.receive_protocol_log_max_directory_size, "6.1"),
            ("SendProtocolLog", server.send_protocol_log_max_file_size,
             server.send_protocol_log_max_directory_size, "6.1"),
            ("MessageTrackingLog", server.message_tracking_log_max_file_size,
             server.message_tracking_log_max_directory_size, "6.2")):
        if directory_size is not None and (file_size is None or file_size > directory_size):
            log.add(f"{path}.{name}MaxFileSize",
                    "Unlimited" if file_size is None else file_size,
                    f"{name}MaxFileSize must not be larger than "
                    f"{name}MaxDirectorySize (exchange.md §{section})", order=order)
            ok = False
    if server.role is ServerRole.CLIENT_ACCESS and server.version != "15.0":
        log.add(f"{path}.Role", server.role.value,
                f"{show(server.role.value)} is not allowed with Version {server.version}: the "
                "Client Access role exists on Exchange 2013 (Version 15.0) only; from 2016 on "
                "the Mailbox role holds the Front End (exchange.md §7.9)", order=order)
        ok = False
    supported = SUPPORTED_OS[server.version]
    if server.windows not in supported:
        log.add(f"{path}.OperatingSystem", server.windows.value,
                f"{show(server.windows.value)} is not allowed with Version {server.version}: "
                f"expected {' or '.join(show(os.value) for os in supported)} (Exchange's "
                "supportability matrix, exchange.md §1.7.1)", order=order)
        ok = False
    ok = _service_addresses(server, path, order, log) and ok
    ok = _on_the_lab("Address" not in bad, server, path, order, log) and ok
    if addresses is not None and "Address" not in bad:
        owned = {str(ipaddress.ip_address(a)): a for a in server.addresses}
        for key, given in owned.items():
            if key in addresses:
                where = "Address" if given == server.address else "ExchsimServiceAddresses"
                log.add(
                    f"{path}.{where}",
                    given,
                    f"{show(given)} is already an address of Servers[{addresses[key]}]:"
                    " each server owns its own addresses",
                    order=order,
                )
                ok = False
        for key in owned:
            addresses.setdefault(key, index)
    if not ok:
        log.fail("ServerName", server.name)
        return None
    for key in bad:
        log.fail("Server", server.name, key)
    return server


def _on_the_lab(check_address: bool, server: Server, path: str, order: Place,
                log: IssueLog) -> bool:
    """A server's Address and its services' own are loopback, or hosts of ``--hosts``
    (config/labnet.py): the other servers' hops connect to them, so an address elsewhere
    would send the organization's mail out of the lab."""
    given = server.exchsim_service_addresses
    found = [("Address", server.address)] if check_address else []
    for service in SERVICE_KEYS if given is not None else ():
        if (own := given.of(service) if given is not None else None) is not None:
            found.append((f"ExchsimServiceAddresses.{service}", own))
    ok = True
    for key, address in found:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue  # reported by its type
        if not is_lab_address(ip):
            log.add(f"{path}.{key}", address, f"{show(address)} is not allowed: expected a "
                    "loopback address (127.0.0.0/8 or ::1) or a host of --hosts (the lab "
                    "never leaves the machine)", order=order)
            ok = False
    return ok


def _service_addresses(server: Server, path: str, order: Place, log: IssueLog) -> bool:
    """``ExchsimServiceAddresses`` names only services the server's Role has."""
    given = server.exchsim_service_addresses
    if given is None:
        return True
    has = role_services(server.role)
    ok = True
    for key in SERVICE_KEYS:
        if given.of(key) is not None and key not in has:
            log.add(f"{path}.ExchsimServiceAddresses.{key}", given.of(key),
                    f"a server of Role {server.role.value} has no {key} service: expected "
                    f"only {', '.join(has)} (exchange.md §7.9)", order=order)
            ok = False
    return ok


def validate_servers(raw: object, log: IssueLog) -> list[tuple[int, Server]]:
    """The file's ``Servers``: every usable server with its index."""
    if not isinstance(raw, list):
        log.add("Servers", raw, f"{show(raw)} is not allowed: expected a list of servers",
                order=place("Servers"))
        return []
    if not raw:
        log.add("Servers", raw, "at least one server is required", order=place("Servers"))
        return []
    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    servers: list[tuple[int, Server]] = []
    for i, item in enumerate(raw):
        server = validate_server(item, i, log, names=names, addresses=addresses)
        if server is not None:
            names[server.name.lower()] = i
            servers.append((i, server))
    if servers and not any(s.role is ServerRole.MAILBOX for _, s in servers):
        for i, server in servers:
            if server.role is ServerRole.CLIENT_ACCESS:
                log.add(f"Servers[{i}] ({server.name}).Role", server.role.value,
                        f"Client Access server {server.name} needs a Mailbox server in the "
                        "config: its Front End proxies every message to a Mailbox server's "
                        "hub (exchange.md §7.2)", order=place("Servers", i))
    return servers
