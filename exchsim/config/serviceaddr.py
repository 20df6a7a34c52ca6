"""exchsim's own ``ExchsimServiceAddresses`` key of a server: each transport service on a host
of its own.

Not an Exchange parameter: on Exchange the services of a server share the server's addresses
(exchange.md §7.9). A lab that runs the services of one server as separate processes on
separate hosts (``exchsim serve --service``, containers, network namespaces) gives each its own
address:

.. code-block:: yaml

    ExchsimServiceAddresses: {FrontEnd: 198.51.100.11, Transport: 198.51.100.12,
                              MailboxDelivery: 198.51.100.13}

Every key is optional; a service not named uses the server's ``Address``. Only the services the
server's Role has may be named (validate/servers.py): a Mailbox server all three, a Client
Access server ``FrontEnd``, an Edge server ``Transport``. A service's address decides

- where its receive connectors listen (a binding to ``0.0.0.0`` or ``[::]``, of the address's
  family, listens on it; an explicit binding listens where it says);
- the source address of the connections it makes (the Front End's hops to a hub and its
  outbound proxy connections; the hub's hops, send connectors and 717 hop);
- where the other services reach it: a Front End reaches a hub's 2525 and 465 at the hub's
  ``Transport`` address, a hub reaches 475 at the ``MailboxDelivery`` address and the Outbound
  Proxy Frontend (717) at the ``FrontEnd`` address (exchsim/services.py).

``exchsim --hosts FILE`` (config/hosts.py) sets this key from the hosts file's ``Services`` map.
"""

from __future__ import annotations

from pydantic import Field

from exchsim.config.base import ExchangeObject, IPAddress
from exchsim.config.enums import ServerRole

__all__ = ["SERVICE_KEYS", "ServiceAddresses", "role_services"]

#: The keys of ``ExchsimServiceAddresses``: the names of ``exchsim serve --service``.
SERVICE_KEYS = ("FrontEnd", "Transport", "MailboxDelivery")


class ServiceAddresses(ExchangeObject):
    """The address of each transport service of a server (None: the server's Address)."""

    frontend: IPAddress | None = Field(alias="FrontEnd", default=None)
    transport: IPAddress | None = Field(alias="Transport", default=None)
    mailbox_delivery: IPAddress | None = Field(alias="MailboxDelivery", default=None)

    def of(self, key: str) -> str | None:
        """The address given for the service named ``key`` (one of SERVICE_KEYS), or None."""
        return {"FrontEnd": self.frontend, "Transport": self.transport,
                "MailboxDelivery": self.mailbox_delivery}[key]


def role_services(role: ServerRole) -> tuple[str, ...]:
    """The services (SERVICE_KEYS) a server of ``role`` has (exchange.md §7.9)."""
    if role is ServerRole.CLIENT_ACCESS:
        return ("FrontEnd",)
    if role is ServerRole.EDGE:
        return ("Transport",)
    return SERVICE_KEYS
