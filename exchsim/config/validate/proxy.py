"""``ExchsimProxyProtocol`` of each server against the rest of the config (config/proxy.py).

- ``HeaderTimeout`` is 0.1 s to 5 minutes;
- each of ``Ports`` is a port the server listens on (a Bindings port of one of its enabled
  receive connectors, as configured, without ``--port-offset``);
- no ``TrustedProxies`` range holds a lab server's Address, a partner organization's included
  (``Lab.Partners``): the servers' own connections (the hops between services, a Mailbox server
  sending to an Edge, a partner's send connector) never carry a PROXY header, so on a port that
  expects one they would be refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from exchsim.config.issues import IssueLog, Subject, place, show
from exchsim.config.model import ReceiveConnector, Server
from exchsim.config.proxy import HEADER_TIMEOUT_BOUNDS
from exchsim.config.syntax import format_timespan

__all__ = ["validate_proxy_protocol"]


def validate_proxy_protocol(servers: Sequence[tuple[int, Server]],
                            connectors: Sequence[ReceiveConnector], log: IssueLog, *,
                            partners: Sequence[tuple[str, Server]] = ()) -> None:
    """Report what is wrong in each server's ``ExchsimProxyProtocol``; ``partners`` are the
    servers of ``Lab.Partners`` with the file each comes from."""
    everyone = [(f"Servers[{i}] ({s.name})", s) for i, s in servers]
    everyone += [(f"{s.name} of {source}", s) for source, s in partners]
    for index, server in servers:
        proxy = server.exchsim_proxy_protocol
        if proxy is None:
            continue
        order = place("Servers", index)
        path = f"Servers[{index}] ({server.name}).ExchsimProxyProtocol"
        low, high = HEADER_TIMEOUT_BOUNDS
        if not low <= proxy.header_timeout <= high:
            log.add(f"{path}.HeaderTimeout", format_timespan(proxy.header_timeout),
                    f"{show(format_timespan(proxy.header_timeout))} is not allowed: expected "
                    f"{format_timespan(low)} to {format_timespan(high)}", order=order)
        own = [c for c in connectors if c.server.lower() == server.name.lower() and c.enabled]
        listening = sorted({b.port for c in own for b in c.bindings})
        needs: list[Subject] = [("ReceiveConnector", c.identity, "Bindings") for c in own]
        for i, port in enumerate(proxy.ports):
            if port not in listening:
                log.add(f"{path}.Ports[{i}]", port,
                        f"{port} is not allowed: {server.name} listens on no such port; "
                        f"expected one of {', '.join(map(str, listening))} (the Bindings of "
                        "its receive connectors, without --port-offset)",
                        order=order, needs=needs)
        for i, trusted in enumerate(proxy.trusted_proxies):
            for name, other in everyone:
                address = ipaddress.ip_address(other.address)
                if trusted.contains(address):
                    log.add(f"{path}.TrustedProxies[{i}]", trusted.text,
                            f"{show(trusted.text)} is not allowed: it holds {other.address}, "
                            f"the Address of {name}; a lab server's own connections carry no "
                            "PROXY header and would be refused: trust the proxies' addresses "
                            "only", order=order, needs=[("Server", other.name, "Address")])
                    break
