"""Transport (hub): accept into the durable queue, categorize, route, deliver (exchange.md §7, §8).

Receiving: end-of-headers checks, the header firewall with the session's (or the proxied
client's) rights, authentication stamping, a Received header, then a durable enqueue (fsync)
before the ``250 2.6.0 <id> [InternalId=..., Hostname=<hub>] ...`` reply.

Delivering is transport/delivery.py: the receiver hands each committed message to it.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exchsim.clock import Clock
from exchsim.config.edgesync import SITE_SERVERS
from exchsim.config.model import DomainType, Lab, Organization, Server, ServerRole
from exchsim.logs.tracking import MessageTracking
from exchsim.policy import dsn, replies, rules
from exchsim.policy.dialect import Dialect
from exchsim.policy.headers import (
    NETWORK_MESSAGE_ID,
    Arrival,
    firewall,
    network_message_id,
    parse_message,
    sender_addresses,
    stamp_arrival,
)
from exchsim.policy.nexthop import DeliveryType, NextHop
from exchsim.policy.outbound import (
    UNREACHABLE_DOMAIN,
    edge_inbound,
    is_edge,
    mailbox_next_hop,
    route_external,
)
from exchsim.policy.permissions import Right
from exchsim.policy.replies import Reply, queued
from exchsim.smtp.message import AcceptedMessage
from exchsim.transport.ndr import build_ndr, ndr_message_id
from exchsim.transport.notify import Notifier, ndr_original, postmaster_of
from exchsim.transport.queue import MessageQueue, QueuedMessage
from exchsim.transport.received import received_for

__all__ = ["HubReceiver", "Route", "build_ndr", "categorize", "ndr_message_id", "ndr_original",
           "postmaster_of"]


class HubReceiver:
    """The MessageHandler of HubTransport connectors."""

    def __init__(self, server: Server, clock: Clock, queue: MessageQueue,
                 deliver: Callable[[QueuedMessage], None],
                 tracking: MessageTracking | None = None) -> None:
        self.server = server
        self.tracking = tracking or MessageTracking.disabled(server)
        self.clock = clock
        self.queue = queue
        self.deliver = deliver  # hands the committed message to the delivery agent

    async def __call__(self, message: AcceptedMessage) -> Reply:
        facts = message.facts
        parsed = parse_message(message.data)
        senders = sender_addresses(parsed.values("From") + parsed.values("Sender"))
        refusal = rules.check_headers(
            facts, parsed.header_size, parsed.values("Received"), message.mail_from, senders
        )
        if refusal is None:
            refusal = rules.check_content(parsed.first("Content-Type"))
        if refusal is not None:
            return refusal.reply
        auth_null = message.mail_params.get("AUTH") == "<>"
        out = firewall(parsed, facts.rights)
        # The server that took the message from the client: the Front End that proxied it
        # (its hop EHLO is its FQDN), else this one (exchange.md §12.2).
        origin = message.context.helo if message.context.proxied else self.server.fqdn
        message_id = out.first("Message-ID")
        generated = None
        if not message_id:
            message_id = generated = f"<{uuid.uuid4()}@{origin}>"
        message.context.log("", f"receiving message with InternetMessageId {message_id}")
        network_id = out.first(NETWORK_MESSAGE_ID)
        if network_id is None:
            network_id = network_message_id(self.clock.utc(), uuid.uuid4().bytes)
        out = stamp_arrival(out, facts.rights, Arrival(
            sender=message.mail_from,
            network_message_id=network_id,
            message_id=generated,
            auth_as=rules.auth_as(facts, auth_null),
            mechanism=facts.identity.mechanism,
            auth_source=origin,
            auth_domain=facts.identity.name or None,
            bypass_anti_spam=Right.BYPASS_ANTI_SPAM in facts.rights,
        ))
        received = received_for(self.server, self.clock, message)
        data = out.prepend(received).to_bytes()
        too_big = rules.over_organization_limits(
            facts, message.mail_from, message.recipients, len(message.data))
        recipients = [r for r in message.recipients if r not in too_big]
        item = None
        # What an NDR or DSN for it says of its arrival (transport/ndr.py, exchange.md §12.6).
        metadata = {"network_message_id": network_id, "client_ip": message.client_ip,
                    "received_from": message.context.helo or "",
                    "source": f"SMTP:{message.context.connector.name}"}  # MessageSourceName
        for param, key in (("ENVID", "envid"), ("RET", "ret")):
            value = message.mail_params.get(param)
            if value:
                metadata[key] = value
        rcpt_dsn = dsn.encode(message.rcpt_params)  # NOTIFY, ORCPT (transport/notify.py)
        if rcpt_dsn is not None:
            metadata[dsn.METADATA_KEY] = rcpt_dsn
        if recipients:
            item = await self.queue.enqueue(
                message_id=message_id,
                sender=message.mail_from,
                recipients=recipients,
                data=data,
                metadata=metadata,
                now=self.clock.utc(),
            )
            self.deliver(item)
        self.tracking.receive(message, item)
        if too_big:
            ndr = await self._size_ndr(facts.org, item, message_id, message.mail_from, too_big,
                                       data, metadata)
            item = item or ndr
        return queued(
            message_id,
            item.internal_id if item is not None else 0,
            self.server.fqdn,
            size=len(message.data),
            seconds=message.received_seconds,
            dialect=Dialect.of(self.server.version),
        )

    async def _size_ndr(self, org: Organization, item: QueuedMessage | None,
                        message_id: str, sender: str, recipients: Sequence[str],
                        original: bytes, metadata: dict[str, str]) -> QueuedMessage | None:
        """Recipients the organization's size limits refused (exchange.md §8.3): a FAIL event
        and their NDR (transport/notify.py)."""
        now = self.clock.utc()
        refused = QueuedMessage(
            internal_id=item.internal_id if item is not None else 0, message_id=message_id,
            sender=sender, recipients=tuple(recipients), data=original, received_at=now,
            attempts=0, next_attempt_at=now, metadata=metadata)
        failed = dict.fromkeys(recipients, replies.RECIPIENT_SIZE_LIMIT)
        self.tracking.fail(refused, failed)
        notifier = Notifier(org, self.server, self.clock, self.queue, self.tracking,
                            self.deliver, expiration=datetime.timedelta(0))
        return await notifier.failed(refused, failed)

    def session_closed(self, session_id: str) -> None:
        pass  # nothing is kept per session


@dataclass(frozen=True, slots=True)
class Route:
    """Where a group of recipients goes (policy/outbound.py):

    - ``mailbox``: Mailbox Transport Delivery of ``server``;
    - ``ndr``: an unknown address in an Authoritative domain (an NDR at once);
    - ``toobig``: the message is over the MaxMessageSize of every connector for the domain (an
      NDR at once);
    - ``connector``: the send connector ``connector`` of this server;
    - ``relay``: the send connector ``connector`` of other servers, through one of
      ``relay_servers`` (their Transport service, 2525; an Edge server's 25);
    - ``inbound``: on an Edge server, the ``EdgeSync - Inbound to <Site>`` connector
      ``connector``: to the Default Frontend (25) of one of ``relay_servers``, the Mailbox
      servers, over the Direct Trust hop;
    - ``unreachable``: no send connector matches (held, retried).

    ``next_hop`` is what its delivery queue is keyed by (policy/nexthop.py); None for ``ndr``
    and ``toobig``.
    """

    kind: str
    server: str | None = None
    next_hop: NextHop | None = None
    connector: str | None = None
    relay_servers: tuple[str, ...] = ()


def categorize(lab: Lab, recipient: str, server: str | None = None,
               size: int | None = None) -> Route:
    """The route of ``recipient`` for a message of ``size`` bytes routed on ``server`` (the
    first server of the config when not given)."""
    source = server if server is not None else lab.servers[0].name
    if is_edge(lab, source):
        inbound = _edge_route(lab, source, recipient)
        if inbound is not None:
            return inbound
    else:
        route = _route(lab.organization, recipient)
        if route.kind != "external":
            return route
    found = route_external(lab, source, rules.domain_of(recipient.lower()), size)
    if found.too_big:
        return Route("toobig")
    if found.connector is None:
        return Route("unreachable", next_hop=found.next_hop)
    kind = "relay" if found.relay_servers else "connector"
    return Route(kind, next_hop=found.next_hop, connector=found.connector,
                 relay_servers=found.relay_servers)


def _edge_route(lab: Lab, edge: str, recipient: str) -> Route | None:
    """On an Edge server: a recipient in an Authoritative or InternalRelay domain goes through
    the Edge's ``--`` connector (``EdgeSync - Inbound to <Site>``) to the Mailbox servers, a
    known mailbox or not (the Edge has no mailboxes and, without recipient filtering, no
    recipient list: the Mailbox server NDRs an unknown one; exchange.md §7.6). None: any other
    recipient, routed by the Edge's other connectors."""
    address = recipient.lower()
    domain = rules.match_accepted_domain(lab.organization.accepted_domains,
                                         rules.domain_of(address))
    if domain is None or domain.domain_type not in (DomainType.AUTHORITATIVE,
                                                    DomainType.INTERNAL_RELAY):
        return None
    connector = edge_inbound(lab, edge)
    if connector is None:
        return Route("unreachable", next_hop=NextHop(DeliveryType.UNREACHABLE,
                                                     UNREACHABLE_DOMAIN.lower()))
    hop = NextHop(DeliveryType.SMART_HOST_CONNECTOR_DELIVERY, connector.name.lower(),
                  connector.name)
    if connector.smart_hosts != (SITE_SERVERS,):
        return Route("connector", next_hop=hop, connector=connector.name)
    mailbox = [s.name for s in lab.servers if s.role is ServerRole.MAILBOX]
    home = lab.organization.mailbox_servers.get(address)
    if home is not None:  # the recipient's own server first (exchsim's choice, as hubselect)
        mailbox.sort(key=lambda name: name.lower() != home.lower())
    return Route("inbound", next_hop=hop, connector=connector.name,
                 relay_servers=tuple(mailbox))


def _route(org: Organization, recipient: str) -> Route:
    address = recipient.lower()
    server = org.mailbox_servers.get(address)
    if server is not None:
        return Route("mailbox", server, mailbox_next_hop(server))
    domain = rules.match_accepted_domain(org.accepted_domains, rules.domain_of(address))
    if domain is not None and domain.domain_type is DomainType.AUTHORITATIVE:
        return Route("ndr")
    return Route("external")
