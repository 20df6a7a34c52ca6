"""Which addresses the lab may use: loopback, and the hosts of a ``--hosts`` file.

The lab never leaves the machine: its configs name loopback addresses only; a server's Address
and its services' own (validate/servers.py), a Dns answer, an XPROXYTO destination or the CRL
server outside 127.0.0.0/8 (or ``::1``) is refused. A hosts file (config/hosts.py) declares the
lab's own hosts, the containers or network namespaces it runs in: their addresses (the values of
its ``Addresses`` and ``Services``) are the lab's too while a config is loaded with it
(:func:`lab_hosts`) and, at run time, for the config loaded so (``Lab.hosts``); a hosts file may
name hosts in loopback, 198.51.100.0/24 and 203.0.113.0/24 only (config/hosts.py
``HOST_NETWORKS``). Nothing else is ever allowed.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

__all__ = ["is_lab_address", "lab_hosts"]

_HOSTS: ContextVar[frozenset[str]] = ContextVar("exchsim_lab_hosts", default=frozenset())


def is_lab_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                   hosts: Iterable[str] | None = None) -> bool:
    """Loopback, or an address of the lab's hosts (``hosts``; None: the config being loaded)."""
    allowed = _HOSTS.get() if hosts is None else hosts
    return ip.is_loopback or str(ip) in allowed


@contextlib.contextmanager
def lab_hosts(addresses: Iterable[str]) -> Iterator[None]:
    """While a config is loaded with a hosts file: its hosts' addresses are the lab's."""
    token = _HOSTS.set(frozenset(str(ipaddress.ip_address(a)) for a in addresses))
    try:
        yield
    finally:
        _HOSTS.reset(token)
