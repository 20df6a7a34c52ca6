"""``--hosts FILE``: run the same config on other hosts, with their own addresses.

A config names loopback addresses (configs/lab.yaml: EX01 on 127.0.10.1, the sink on
127.0.10.250, ...). A hosts file (exchsim's own format) moves them to the addresses of real
hosts, containers or network namespaces, without a second config:

.. code-block:: yaml

    Addresses:            # an address of the configs -> the address of its own host
      127.0.10.1: 198.51.100.11
      127.0.10.250: 198.51.100.50
    Services:             # a server whose services run on hosts of their own
      EX01: {FrontEnd: 198.51.100.11, Transport: 198.51.100.12, MailboxDelivery: 198.51.100.13}

It is applied to the parsed YAML of the config, and of each config its ``Lab.Partners`` names,
before validation (:func:`apply_hosts`, a pure function):

- ``Addresses``: every scalar (a value or a mapping key, at any depth, in lists too) that is
  exactly a mapped address (``127.0.10.1``), the address in brackets (``[127.0.10.1]``, a smart
  host) or the address with a port (``127.0.10.1:25``, ``[::1]:25``) gets the new address. Ranges
  (``127.0.10.0/24``, ``a-b``) and host names are left as they are. Several addresses may map to
  one (the sink and the CRL server on one host).
- ``Services``: the server of that Name gets ``ExchsimServiceAddresses`` (config/serviceaddr.py)
  with these addresses, replacing one the config gives; the keys are ``FrontEnd``,
  ``Transport``, ``MailboxDelivery``. The values are the hosts' addresses: ``Addresses`` does not
  translate them again.

The hosts' addresses (the values of ``Addresses`` and ``Services``) must be IPv4 addresses in
:data:`HOST_NETWORKS`: loopback (127.0.0.0/8) or the documentation networks 198.51.100.0/24 and
203.0.113.0/24 (RFC 5737, never routed on the Internet; the compose network is 198.51.100.0/24).
They become addresses the lab may connect to (config/labnet.py: Dns answers, smart hosts,
XPROXYTO, the CRL server), so an address outside them (a public one, ``0.0.0.0``, 192.0.2.0/24,
which the machine the lab is built on uses, a private network) would let the lab's mail leave
the lab: such a file is refused. IPv6 is refused too: a service's hops leave from its own
address, so every host of a lab must be of one family, and IPv6 loopback has one address only
(``::1``), not one per server.

An address or a server the configs do not have is ignored (one hosts file serves a small lab
and a grown one alike); ``exchsim check --hosts FILE`` lists them (:func:`unused`). A bad hosts
file is refused as a config is: every problem with the file, the key, the value and what is
allowed, and nothing starts (:func:`load_hosts`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from exchsim.config.issues import ConfigError, Issue, IssueLog, did_you_mean, show
from exchsim.config.model import Lab
from exchsim.config.serviceaddr import SERVICE_KEYS, role_services
from exchsim.config.yamlfile import parse_yaml

__all__ = ["HOSTS_KEYS", "HOST_NETWORKS", "Hosts", "apply_hosts", "format_addresses",
           "load_hosts", "translate", "unused", "unused_in_files"]

HOSTS_KEYS = ("Addresses", "Services")
#: Where a hosts file may put the lab's hosts (module docstring).
HOST_NETWORKS = tuple(ipaddress.IPv4Network(n)
                      for n in ("127.0.0.0/8", "198.51.100.0/24", "203.0.113.0/24"))
_WITH_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[0-9.]+)):(?P<port>[0-9]{1,5})$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Hosts:
    """A hosts file: address -> new address, and server Name -> service -> address."""

    addresses: Mapping[Address, str] = field(default_factory=dict)
    services: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    source: str = "<hosts>"

    def targets(self) -> frozenset[str]:
        """The hosts' addresses: the values of Addresses and Services."""
        return frozenset({*self.addresses.values(),
                          *(a for services in self.services.values() for a in services.values())})


def _ip(text: object) -> Address | None:
    if not isinstance(text, str):
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _host(address: str, bracket: bool) -> str:
    return f"[{address}]" if bracket or ":" in address else address


def translate(value: str, addresses: Mapping[Address, str]) -> str:
    """One scalar with the hosts file's addresses: exact, ``[address]``, ``address:port``."""
    found = _ip(value)
    if found is not None:
        return addresses.get(found, value)
    if value.startswith("[") and value.endswith("]"):
        found = _ip(value[1:-1])
        if found is not None and found in addresses:
            return f"[{addresses[found]}]"
        return value
    match = _WITH_PORT.match(value)
    if match is not None:
        found = _ip(match["v6"] or match["v4"])
        if found is not None and found in addresses:
            return f"{_host(addresses[found], match['v6'] is not None)}:{match['port']}"
    return value


def _walk(data: object, addresses: Mapping[Address, str]) -> object:
    if isinstance(data, str):
        return translate(data, addresses)
    if isinstance(data, list):
        return [_walk(item, addresses) for item in data]
    if isinstance(data, dict):
        return {_walk(key, addresses) if isinstance(key, str) else key: _walk(value, addresses)
                for key, value in data.items()}
    return data


def apply_hosts(data: object, hosts: Hosts) -> object:
    """The parsed YAML of a config with ``hosts`` applied (a new object; ``data`` is kept)."""
    out = _walk(data, hosts.addresses)
    if not hosts.services or not isinstance(out, dict):
        return out
    servers = out.get("Servers")
    if not isinstance(servers, list):
        return out
    wanted = {name.lower(): services for name, services in hosts.services.items()}
    for index, entry in enumerate(servers):
        if isinstance(entry, dict) and isinstance(entry.get("Name"), str):
            services = wanted.get(entry["Name"].lower())
            if services is not None:
                servers[index] = {**entry, "ExchsimServiceAddresses": dict(services)}
    return out


def unused(hosts: Hosts, configs: Mapping[str, object]) -> list[str]:
    """What the hosts file names that none of ``configs`` (source -> parsed YAML) has."""
    seen: set[Address] = set()
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, str):
            text = node[1:-1] if node.startswith("[") and node.endswith("]") else node
            match = _WITH_PORT.match(node)
            found = _ip(text) or (_ip(match["v6"] or match["v4"]) if match else None)
            if found is not None:
                seen.add(found)
        elif isinstance(node, list):
            for item in node:
                visit(item)
        elif isinstance(node, dict):
            for key, value in node.items():
                visit(key)
                visit(value)

    for data in configs.values():
        visit(data)
        servers = data.get("Servers") if isinstance(data, dict) else None
        for entry in servers if isinstance(servers, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("Name"), str):
                names.add(entry["Name"].lower())
    notes = [f"Addresses.{address}: no config has this address (ignored)"
             for address in hosts.addresses if address not in seen]
    notes += [f"Services.{name}: no config has a server of this Name (ignored)"
              for name in hosts.services if name.lower() not in names]
    return notes


def _address_value(value: object, key: str, log: IssueLog) -> str | None:
    found = _ip(value)
    if found is None:
        log.add(key, value, f"{show(value)} is not allowed: expected an IP address like "
                "198.51.100.11")
        return None
    if not isinstance(found, ipaddress.IPv4Address) or not any(
            found in network for network in HOST_NETWORKS):
        log.add(key, value, f"{show(value)} is not allowed: expected an IPv4 address in "
                f"{', '.join(str(n) for n in HOST_NETWORKS)} (the lab's hosts: its mail "
                "never leaves them)")
        return None
    return str(found)


def parse_hosts(data: object, source: str) -> Hosts:
    """A hosts file's parsed YAML as :class:`Hosts`; ConfigError lists every problem."""
    log = IssueLog(source)
    if not isinstance(data, dict):
        what = "the file is empty" if data is None else f"{show(data)} is not allowed"
        log.add("", data, f"{what}: expected a mapping with the keys {', '.join(HOSTS_KEYS)}")
        raise ConfigError(log.items)
    for key in data:
        if key not in HOSTS_KEYS:
            log.add(str(key), key, f"unknown key '{key}': expected one of "
                    f"{', '.join(HOSTS_KEYS)}", did_you_mean(str(key), HOSTS_KEYS))
    addresses: dict[Address, str] = {}
    raw = data.get("Addresses") or {}
    if not isinstance(raw, dict):
        log.add("Addresses", raw, f"{show(raw)} is not allowed: expected a mapping of an "
                "address of the config to the address of its host")
        raw = {}
    for old, new in raw.items():
        found = _ip(old)
        if found is None:
            log.add(f"Addresses.{old}", old, f"{show(old)} is not allowed: expected an IP "
                    "address of the config like 127.0.10.1 as the key")
            continue
        target = _address_value(new, f"Addresses.{old}", log)
        if target is not None:
            addresses[found] = target
    services: dict[str, dict[str, str]] = {}
    raw = data.get("Services") or {}
    if not isinstance(raw, dict):
        log.add("Services", raw, f"{show(raw)} is not allowed: expected a mapping of a server's "
                f"Name to its services' addresses ({', '.join(SERVICE_KEYS)})")
        raw = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or not entry:
            log.add(f"Services.{name}", entry, f"{show(entry)} is not allowed: expected a "
                    f"mapping of {', '.join(SERVICE_KEYS)} to IP addresses")
            continue
        given: dict[str, str] = {}
        for service, value in entry.items():
            key = f"Services.{name}.{service}"
            if service not in SERVICE_KEYS:
                log.add(key, service, f"unknown service '{service}': expected one of "
                        f"{', '.join(SERVICE_KEYS)}", did_you_mean(str(service), SERVICE_KEYS))
                continue
            target = _address_value(value, key, log)
            if target is not None:
                given[service] = target
        services[str(name)] = given
    if log.items:
        raise ConfigError(log.items)
    return Hosts(addresses, services, source)


def load_hosts(path: Path | str) -> Hosts:
    """Read and check a hosts file; ConfigError names the file and every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Issue(source, "", source, "hosts file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Issue(source, "", source,
                                 f"cannot read the hosts file: {exc}")]) from None
    log = IssueLog(source)
    data = parse_yaml(text, log)
    if log.items:
        raise ConfigError(log.items)
    return parse_hosts(data, source)


def format_addresses(lab: Lab) -> str:
    """``exchsim check --hosts``: where each server, service and lab piece runs."""
    lines = ["Addresses (after --hosts):"]
    for org in (lab, *lab.partners):
        for server in org.servers:
            services = ", ".join(f"{key} {server.service_address(key)}"
                                 for key in role_services(server.role))
            lines.append(f"  {server.name:<15} Address {server.address}  ({services})")
    lines.append(f"  {'InternetSink':<15} {lab.lab.internet_sink.address}:"
                 f"{lab.lab.internet_sink.port}")
    lines.append(f"  {'CrlServer':<15} {lab.lab.crl_server.address}:{lab.lab.crl_server.port}")
    return "\n".join(lines)


def unused_in_files(hosts: Hosts, lab: Lab) -> list[str]:
    """:func:`unused` over the files of ``lab`` and of its partners, as they are on disk."""
    configs: dict[str, object] = {}
    for source in (lab.source, *(partner.source for partner in lab.partners)):
        try:
            configs[source] = parse_yaml(Path(source).read_text(encoding="utf-8"),
                                         IssueLog(source))
        except OSError:
            continue
    return unused(hosts, configs)
