"""The Received header each service stamps on a message it accepted (docs/exchange.md §5.4)."""

from __future__ import annotations

from exchsim.clock import Clock
from exchsim.config.model import Server
from exchsim.policy.headers import Field, received_field
from exchsim.smtp.message import AcceptedMessage


def received_for(server: Server, clock: Clock, message: AcceptedMessage,
                 via: str | None = None) -> Field:
    """``Received: from <client helo> (<client ip>) by <server> (<listener ip>) ...``."""
    tls = message.context.tls
    return received_field(
        helo=message.client_helo,
        client_ip=message.client_ip,
        server_fqdn=server.fqdn,
        server_ip=message.context.local.ip,
        version_id=server.version_string,
        now=clock.local(),
        tls=tls.names() if tls is not None else None,
        via=via,
    )
