"""The ``Lab`` settings: exchsim's own, not Exchange's (the internet sink, retry interval)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from exchsim.config.issues import IssueLog, place, show
from exchsim.config.model import LabSettings, Server
from exchsim.config.prose import validate

__all__ = ["validate_lab"]


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
    for i, server in servers:
        if _same(server.address, ip):
            log.add("Lab.InternetSink.Address", sink.address,
                    f"{show(sink.address)} is not allowed: it is the Address of "
                    f"Servers[{i}] ({server.name}); the internet sink needs its own",
                    order=order)
    return settings


def _same(address: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(address) == ip
    except ValueError:
        return False
