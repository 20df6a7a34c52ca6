"""Before the greeting: the PROXY header on the ports that expect one, and the gateway warning.

exchsim's own feature (Exchange has no PROXY protocol, exchange.md §3.5). Each server's
:class:`ProxyGate` (the daemon's ``ServerNode.proxy``) is asked by the session adapter, for
every new connection, who the session's client is, before the session core exists:

- On a port its ``ExchsimProxyProtocol`` does not list, the TCP peer, as always.
- On a listed port, a peer outside ``TrustedProxies`` is refused at once: the connection is
  closed without a greeting and without reading from it.
- A trusted peer has ``HeaderTimeout`` to send a whole header (smtp/proxyheader.py); what it
  sends is read in pieces of at most the longest header, so no more than that is ever held.
  The header's source address and port become the session's client: the connector choice by
  RemoteIPRanges, connection limits per source, the protocol log's remote-endpoint, the EHLO
  reply, Received lines, message rate limits and the tracking log all see it. Bytes that came
  after the header go to the session core as the client's first input. A header that names no
  client (v1 ``UNKNOWN``, v2 ``LOCAL``, or a family that is not TCP) keeps the real peer.
- A malformed header, one that is not complete in time, or a connection closed before its
  header ends: closed without a greeting.

Each refused connection writes one WARNING line to exchsim's log (``exchsim.smtp.proxyread``):
the server, the listener, the peer and the reason, with at most 32 bytes of the peer's input
quoted (``proxyheader.ProxyHeaderError``). A connection closed before sending a single byte (a
load balancer's TCP health check) is logged at DEBUG only. ``exchsim lab|serve`` log through
``logs/repeats.py``'s filter, so a flood of refusals of one kind (untrusted peer, malformed
header, timeout, cut short) writes one line and one count a minute.

The gateway warning: when ``Lab.ComposeGateway`` is set and a session's client is that address
(no PROXY header named another), NAT has hidden the real client, and every RemoteIPRanges rule
and log sees the gateway instead. One WARNING says so, then at most one every
:data:`GATEWAY_WARNING_INTERVAL` seconds per server, with the number of such sessions since.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from exchsim.clock import Clock
from exchsim.config.model import LabSettings, Server
from exchsim.smtp.proxyheader import (
    MAX_HEADER,
    ProxyHeader,
    ProxyHeaderError,
    ProxyListeners,
    parse,
)
from exchsim.smtp.readtimer import ReadTimer

__all__ = ["GATEWAY_WARNING_INTERVAL", "Proxied", "ProxyGate"]

log = logging.getLogger(__name__)

GATEWAY_WARNING_INTERVAL = 300.0
_ENDED = "the connection ended after %d bytes, before the PROXY header did"


@dataclass(frozen=True, slots=True)
class Proxied:
    client: tuple[str, int]  # the session's client: the header's source, or the TCP peer
    leftover: bytes  # what the peer sent after the header: the client's first SMTP bytes
    header: ProxyHeader | None


class ProxyGate:
    """One server's PROXY protocol ports and its compose-gateway warning."""

    def __init__(self, server: Server, lab: LabSettings, clock: Clock) -> None:
        self.server = server.name
        self.listeners = ProxyListeners.of(server)
        gateway = lab.compose_gateway
        self.gateway = str(ipaddress.ip_address(gateway)) if gateway else None
        self._clock = clock
        self._warned_at: float | None = None
        self._unwarned = 0  # gateway sessions since the last warning

    async def admit(self, reader: asyncio.StreamReader, timer: ReadTimer,
                    local: tuple[str, int], peer: tuple[str, int],
                    port: int) -> Proxied | None:
        """The client of a new connection on ``local`` (``port`` as configured); None: refuse
        it (logged here; the caller closes the connection without a greeting)."""
        listeners = self.listeners
        if listeners is None or not listeners.expects(port):
            self._note(peer[0])
            return Proxied(peer, b"", None)
        if not listeners.trusts(peer[0]):
            self._refuse(local, peer, "not in ExchsimProxyProtocol's TrustedProxies")
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + listeners.timeout
        data = b""
        try:
            while (header := parse(data)) is None:
                with timer.limit(deadline):
                    chunk = await reader.read(MAX_HEADER - len(data))
                if not chunk:
                    if data:
                        self._refuse(local, peer, _ENDED, len(data))
                    else:
                        log.debug("%s: %s closed %s before sending a PROXY header",
                                  self.server, _endpoint(peer), _endpoint(local))
                    return None
                data += chunk
        except ProxyHeaderError as error:
            self._refuse(local, peer, "malformed PROXY header: %s", error)
            return None
        except TimeoutError:
            self._refuse(local, peer, "no complete PROXY header within %g s (%d bytes came)",
                         listeners.timeout, len(data))
            return None
        except asyncio.CancelledError:  # the peer's EOF or reset (the adapter), or shutdown
            if data:
                self._refuse(local, peer, _ENDED, len(data))
            raise
        client = header.source or peer
        if header.source is None:
            self._note(peer[0])
        log.debug("%s: PROXY v%d %s from %s on %s: client %s", self.server, header.version,
                  header.kind, _endpoint(peer), _endpoint(local), _endpoint(client))
        return Proxied(client, data[header.size:], header)

    def _refuse(self, local: tuple[str, int], peer: tuple[str, int], reason: str,
                *args: object) -> None:
        # The reason is part of the template, so that logs/repeats.py counts each kind apart.
        log.warning("%s: refused a connection from %s to %s (a PROXY protocol port): " + reason,
                    self.server, _endpoint(peer), _endpoint(local), *args)

    def _note(self, client: str) -> None:
        """A session whose client is the TCP peer: warn (rate-limited) if it is the gateway."""
        if self.gateway is None or client != self.gateway:
            return
        self._unwarned += 1
        now = self._clock.monotonic()
        if self._warned_at is not None and now - self._warned_at < GATEWAY_WARNING_INTERVAL:
            return
        log.warning("%s: %d session(s) from %s, the compose network's gateway "
                    "(Lab.ComposeGateway), without a PROXY header: NAT hides the client's "
                    "address, so RemoteIPRanges, the logs and the Received lines see the "
                    "gateway's; send the PROXY protocol from a proxy and list it in "
                    "ExchsimProxyProtocol (this warning repeats at most every %d s)",
                    self.server, self._unwarned, self.gateway, GATEWAY_WARNING_INTERVAL)
        self._warned_at, self._unwarned = now, 0


def _endpoint(pair: tuple[str, int]) -> str:
    host, port = pair
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
