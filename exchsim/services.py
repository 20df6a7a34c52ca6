"""The transport services of one server, all in one process or one of them alone.

Exchange splits a Mailbox server's transport into three Windows services (exchange.md §7.9):
the Front End Transport service (MSExchangeFrontEndTransport), the Transport service
(MSExchangeTransport, the hub) and the Mailbox Transport Delivery service (MSExchangeDelivery).
``exchsim serve --server NAME --service FrontEnd|Transport|MailboxDelivery`` runs one of them:

- ``FrontEnd``: the receive connectors with TransportRole FrontendTransport (25, 587, 717) and
  the proxy that hands their mail to a hub (transport/frontend.py);
- ``Transport``: the HubTransport connectors (2525, 465; an Edge server's connectors too), the
  queue, the delivery agent with the send connectors, and the queue control socket that
  ``exchsim queue`` talks to (transport/queuecontrol.py);
- ``MailboxDelivery``: the implicit 475 listener and the Maildirs.

Without ``--service`` a process runs every service, as before. Split services talk to each other
only over the network, exactly as the services of one process do (the front end proxies to
the hub's 2525, the hub delivers to 475), so they can run on one data directory or on separate
ones, on one host or several. Each service has an address: the server's ``Address``, or its own
from ``ExchsimServiceAddresses`` (config/serviceaddr.py). It listens there (:func:`listen_address`),
its connections leave from there, and the other services reach it there: a Front End proxies to
each hub's Transport address, a hub delivers to the MailboxDelivery address of the mailbox's
server and proxies outbound mail (FrontendProxyEnabled) to :func:`outbound_frontend`'s FrontEnd
address.

One writer per file: the queue file and the control socket belong to the Transport service
alone. Protocol logs go, for a split service, to the service's own folder as Exchange's do
(``DATA/logs/<server>/FrontEnd|Hub|Mailbox/ProtocolLog/SmtpReceive`` and ``.../SmtpSend``,
after ``TransportRoles\\Logs\\FrontEnd|Hub|Mailbox``, exchange.md §6.1); a process that runs
every service keeps ``DATA/logs/<server>/ProtocolLog`` as before. The message tracking folder
stays shared (``DATA/logs/<server>/MessageTracking``): the hub writes the ``MSGTRK`` files and
Mailbox Transport Delivery the ``MSGTRKMD`` files (exchange.md §6.2), so each file still has
one writer. The certificates under ``DATA/pki`` are written atomically under a lock, and the
NTLM user file atomically, so services starting on one data directory share them safely. The
NTLM user file is the process's own (:func:`ntlm_users_path`): containers of other organizations
share one data volume (docker-compose.yml), and a partner's users must never replace Contoso's.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from exchsim.config.model import Lab, Server, ServerRole, TransportRole as Role
from exchsim.policy.edgetrust import direct_trust_peers
from exchsim.policy.hubselect import hub_order
from exchsim.policy.retry import RetrySchedule
from exchsim.smtp.message import MessageHandler
from exchsim.transport.delivery import DeliveryAgent, Endpoint
from exchsim.transport.frontend import FrontendProxy, HubChooser, HubEndpoint
from exchsim.transport.hub import HubReceiver
from exchsim.transport.mailbox import MailboxDeliveryReceiver
from exchsim.transport.queue import MessageQueue
from exchsim.transport.restart import keep_running
from exchsim.transport.smtpsend import SendContext, SmtpSender

if TYPE_CHECKING:
    from exchsim.daemon import LabDaemon, ServerNode

PORT_DEFAULT_FRONTEND = 25  # a Mailbox server's Default Frontend; an Edge's internal connector
PORT_HUB_DEFAULT = 2525
PORT_CLIENT_PROXY = 465
PORT_MAILBOX_DELIVERY = 475
PORT_OUTBOUND_PROXY = 717


class Service(enum.StrEnum):
    """``--service``: Exchange's transport services of a server (exchange.md §7.9)."""

    FRONTEND = "FrontEnd"
    TRANSPORT = "Transport"
    MAILBOX_DELIVERY = "MailboxDelivery"


ROLES: dict[Service, frozenset[Role]] = {
    Service.FRONTEND: frozenset({Role.FRONTEND}),
    Service.TRANSPORT: frozenset({Role.HUB, Role.EDGE}),
    Service.MAILBOX_DELIVERY: frozenset({Role.MAILBOX_DELIVERY}),
}
LOG_FOLDERS = {Service.FRONTEND: "FrontEnd", Service.TRANSPORT: "Hub",
               Service.MAILBOX_DELIVERY: "Mailbox"}


def parse_service(value: str) -> Service:
    """``--service``'s value, case-insensitive; a ValueError names the allowed values."""
    for service in Service:
        if value.strip().lower() == service.value.lower():
            return service
    allowed = ", ".join(s.value for s in Service)
    raise ValueError(f"unknown service {value!r}; the services of a server are: {allowed}")


def runs(service: Service | None, role: Role) -> bool:
    """Whether a process running ``service`` (None: every service) serves ``role``."""
    return service is None or role in ROLES[service]


def services_of(server: Server) -> tuple[Service, ...]:
    """The transport services a server has: a Client Access server (2013) the Front End only,
    an Edge server its Transport service, a Mailbox server all three (exchange.md §7.9)."""
    if server.role is ServerRole.CLIENT_ACCESS:
        return (Service.FRONTEND,)
    if server.role is ServerRole.EDGE:
        return (Service.TRANSPORT,)
    return tuple(Service)


def missing_service_message(server: Server, service: Service) -> str | None:
    """The error for ``serve --service`` naming a service the server does not have."""
    has = services_of(server)
    if service in has:
        return None
    return (f"exchsim: {server.name} is a server of Role {server.role.value}: it has no "
            f"{service.value} service (its services: {', '.join(s.value for s in has)})")


def log_dir(data_dir: Path, server: str, service: Service | None) -> Path:
    """The folder of a server's protocol logs: the service's own when it runs alone."""
    base = data_dir / "logs" / server
    return base if service is None else base / LOG_FOLDERS[service]


ROLE_SERVICES = {Role.FRONTEND: Service.FRONTEND, Role.HUB: Service.TRANSPORT,
                 Role.EDGE: Service.TRANSPORT, Role.MAILBOX_DELIVERY: Service.MAILBOX_DELIVERY}


def address_of(server: Server, service: Service) -> str:
    """Where a service of ``server`` runs: its ExchsimServiceAddresses entry, else Address."""
    return server.service_address(service.value)


def listen_address(server: Server, role: Role) -> str:
    """The address a wildcard binding of a ``role`` connector listens on."""
    return address_of(server, ROLE_SERVICES[role])


def outbound_frontend(servers: Sequence[Server], hub: Server) -> Server:
    """The server whose Front End a hub's FrontendProxyEnabled send connectors go through (the
    Outbound Proxy Frontend, 717; exchange.md §7.4): on Exchange 2013 (Version 15.0) with Client
    Access servers in the config, the first of them in the config's order (the Front End
    Transport service runs on the Client Access servers, exchange.md §7.9; the config has one
    site); otherwise the hub's own server, whose Front End runs beside its hub."""
    if hub.version == "15.0":
        for server in servers:
            if server.role is ServerRole.CLIENT_ACCESS:
                return server
    return hub


def listen_endpoints(lab: Lab, server: Server, service: Service | None,
                     port_offset: int) -> list[tuple[str, int]]:
    """Where ``server`` listens when a process runs ``service`` of it (None: every service):
    each binding of its enabled receive connectors of those services, a wildcard binding on
    its service's address (``listen_address``) when of the binding's family, each port plus
    ``port_offset``. The daemon opens these (daemon.py); ``exchsim health`` probes them."""
    out: set[tuple[str, int]] = set()
    for connector in lab.connectors_of(server.name):
        if not connector.enabled or not runs(service, connector.transport_role):
            continue  # disabled, or another service's listener
        own = listen_address(server, connector.transport_role)
        for binding in connector.bindings:
            if binding.is_wildcard:
                if binding.address.version == ipaddress.ip_address(own).version:
                    out.add((own, binding.port + port_offset))
            else:
                out.add((str(binding.address), binding.port + port_offset))
    return sorted(out)


def ntlm_users_path(data_dir: Path, server: str | None, service: Service | None) -> Path:
    """The NTLM user file a process writes (smtp/ntlm.py): ``ntlm/users.txt`` for ``exchsim
    lab``, ``ntlm/<server>.txt`` for ``serve --server``, ``ntlm/<server>-<service>.txt`` for
    one service, so that no two processes on one data directory write the same file."""
    if server is None:
        return data_dir / "ntlm" / "users.txt"
    name = server if service is None else f"{server}-{service.value}"
    return data_dir / "ntlm" / f"{name}.txt"


def _delivery_agent(daemon: LabDaemon, node: ServerNode, queue: MessageQueue) -> DeliveryAgent:
    lab, server, offset = daemon.lab, node.server, daemon.port_offset
    send_context = SendContext(
        server=server, dns=lab.dns, port_offset=offset,
        certificate=node.send_certificate, judge=node.judge_certificate,
        protocol_log=node.connector_log, source=address_of(server, Service.TRANSPORT))
    agent = DeliveryAgent(
        lab, server, daemon.clock, queue, node.client_tls_context,
        mailbox_delivery={s.name.lower(): Endpoint(address_of(s, Service.MAILBOX_DELIVERY),
                                                   PORT_MAILBOX_DELIVERY + offset)
                          for s in lab.servers},
        internet=Endpoint(lab.lab.internet_sink.address, lab.lab.internet_sink.port + offset),
        retry=lab.lab.retry_interval,
        tracking=node.tracking,
        schedule=RetrySchedule.of(server, lab.lab.retry_interval),
        # Send connectors: their ports get the lab's offset too (transport/smtpsend.py).
        sender=SmtpSender(send_context),
        hub_transport={s.name.lower(): Endpoint(address_of(s, Service.TRANSPORT), (
            PORT_DEFAULT_FRONTEND if s.role is ServerRole.EDGE else PORT_HUB_DEFAULT) + offset)
                       for s in lab.servers},
        frontend=Endpoint(address_of(outbound_frontend(lab.servers, server), Service.FRONTEND),
                          PORT_OUTBOUND_PROXY + offset),
        # Direct Trust hops (policy/edgetrust.py, exchange.md §7.6): an Edge's entry above is
        # its port 25; an Edge reaches the Mailbox servers' Default Frontend (25).
        default_frontend={s.name.lower(): Endpoint(address_of(s, Service.FRONTEND),
                                                   PORT_DEFAULT_FRONTEND + offset)
                          for s in lab.servers if s.role is ServerRole.MAILBOX},
        edges=frozenset(e.lower() for e in direct_trust_peers(lab, server.name)
                        if lab.server(e).role is ServerRole.EDGE),
        # What the other side of a Direct Trust hop must present (mutual, exchange.md §7.6).
        trusted=frozenset(node.direct_trust_certs.values()),
    )
    agent.hops.send_log = node.send_log
    agent.hops.source = address_of(server, Service.TRANSPORT)
    return agent


def _frontend_proxy(daemon: LabDaemon, node: ServerNode) -> FrontendProxy:
    server, offset = node.server, daemon.port_offset
    send_context = SendContext(
        server=server, dns=daemon.lab.dns, port_offset=offset,
        certificate=node.send_certificate, judge=node.judge_certificate,
        protocol_log=node.connector_log, source=address_of(server, Service.FRONTEND))
    hub = address_of(server, Service.TRANSPORT)
    return FrontendProxy(
        server, daemon.clock, node.client_tls_context,
        default_hub=HubEndpoint(hub, PORT_HUB_DEFAULT + offset),
        client_proxy=HubEndpoint(hub, PORT_CLIENT_PROXY + offset),
        sender=SmtpSender(send_context),  # Outbound Proxy Frontend's client (XPROXYTO)
        send_log=node.send_log,
        hubs=_hub_chooser(daemon, server),
        source=address_of(server, Service.FRONTEND),
        hop_timeout=daemon.lab.lab.hop_timeout.total_seconds(),
    )


def _hub_chooser(daemon: LabDaemon, frontend: Server) -> HubChooser:
    """The Front End's proxy destinations (policy/hubselect.py): each Mailbox server's 2525 and
    465 at its Transport address, best first, from the lab's configuration of the moment
    (reload.py may replace it)."""
    offset = daemon.port_offset

    def choose(recipients: Sequence[str],
               submitter: str | None) -> list[tuple[HubEndpoint, HubEndpoint]]:
        lab = daemon.lab
        out = []
        for name in hub_order(lab, frontend, recipients, submitter):
            address = address_of(lab.server(name), Service.TRANSPORT)
            out.append((HubEndpoint(address, PORT_HUB_DEFAULT + offset),
                        HubEndpoint(address, PORT_CLIENT_PROXY + offset)))
        return out
    return choose


async def start_services(daemon: LabDaemon, node: ServerNode, server: Server) -> None:
    """The message handlers of the services ``daemon`` runs for ``server``; for the Transport
    service also its queue and its delivery agent (started)."""
    hosted = [s for s in services_of(server) if daemon.service in (None, s)]
    handlers: dict[Role, MessageHandler] = {}
    if Service.TRANSPORT in hosted:
        queue = await MessageQueue.open(daemon.data_dir / "queue" / f"{server.name}.sqlite",
                                        clock=daemon.clock)
        daemon.queues[server.name] = queue
        agent = daemon.agents[server.name] = _delivery_agent(daemon, node, queue)
        handlers[Role.HUB] = HubReceiver(server, daemon.clock, queue, agent.submit,
                                         node.tracking)
        handlers[Role.EDGE] = HubReceiver(server, daemon.clock, queue, agent.submit,
                                          node.tracking)
        daemon.spawn(keep_running(f"delivery {server.name}", agent.run, daemon.restart_policy),
                     f"delivery {server.name}")
    if Service.FRONTEND in hosted:
        node.frontend = _frontend_proxy(daemon, node)
        handlers[Role.FRONTEND] = node.frontend
    if Service.MAILBOX_DELIVERY in hosted:
        handlers[Role.MAILBOX_DELIVERY] = MailboxDeliveryReceiver(
            server, daemon.clock, daemon.data_dir / "mailboxes", node.tracking)
    node.handlers = handlers
