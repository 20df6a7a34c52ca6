"""The Received line each service stamps on a message it accepted (docs/exchange.md §12.1).

One rule for every hop, as one SMTP receive code writes them: ``from`` is the TCP peer, the
name it gave in HELO / EHLO and its address; ``by`` is the receive connector's Fqdn (the
server's FQDN when the connector has none) and the listener's address. So the Front End's line
names the client and the connector (``by mail.contoso.com`` when Default Frontend has that
Fqdn), the hub's names the Front End server that proxied the message (its hop EHLO is its
FQDN: ``from ex01.contoso.com (127.0.10.1) by ex01.contoso.com (127.0.10.1)`` on one
multi-role server), and mailbox delivery's names the hub. The client that XPROXYFROM names
stays in the hub's logs, not in its Received line. The date is the server's local time
(its TimeZone, config/zones.py); the id is its build (config/versions.py).
"""

from __future__ import annotations

from exchsim.clock import Clock
from exchsim.config.model import Server
from exchsim.policy.dialect import Dialect
from exchsim.policy.headers import Field, received_field
from exchsim.smtp.message import AcceptedMessage


def received_for(server: Server, clock: Clock, message: AcceptedMessage,
                 via: str | None = None) -> Field:
    """``Received: from <peer helo> (<peer ip>) by <connector fqdn> (<listener ip>) ...``."""
    context = message.context
    tls = context.tls
    return received_field(
        from_name=context.helo,
        from_ip=context.peer.ip,
        by_name=context.connector.fqdn or server.fqdn,
        by_ip=context.local.ip,
        build=server.exchange_version.build,
        now=clock.local(server.zone),
        tls=tls.names() if tls is not None else None,
        tls_2013=Dialect.of(server.version).received_tls_2013,
        via=via,
    )
