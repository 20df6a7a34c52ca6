"""The message tracking log in Exchange's CSV format (exchange.md §6.2, §9.8).

One directory per server, ``DATA/logs/<server>/MessageTracking/``, as Exchange's
``TransportRoles\\Logs\\MessageTracking``. Two kinds of file share it, as on a Mailbox server:
``MSGTRK`` (the hub: RECEIVE, SEND, FAIL, DSN, DEFER, POISONMESSAGE) and ``MSGTRKMD`` (Mailbox
Transport Delivery: DELIVER, DUPLICATEDELIVER). File names are hourly,
``MSGTRKyyyymmddHH-n.LOG``, ``n`` counting up past the file size limit: exchsim's choice
between the documented ``MSGTRK<svc>yyyymmdd-nnnn.log`` and the hourly names seen on real
servers (exchange.md §9.8). Each file starts with the five ``#`` header lines
(``#Log-type: Message Tracking Log``, ``#Version:`` the server's build) and the 30 fields of
2016/2019 in Exchange's order; values are CSV-quoted, times UTC, multi-valued fields joined
with ``;``. Rotation and limits are the protocol log's (logs/protocol.py) with the defaults of
Set-TransportService: MessageTrackingLogMaxFileSize 10 MB, MessageTrackingLogMaxDirectorySize
1000 MB, MessageTrackingLogMaxAge 30 days; MessageTrackingLogSubjectLoggingEnabled on.

Fields exchsim fills (the rest stay empty; the choices are in exchange.md §6.2): date-time,
client-ip / client-hostname (the TCP peer on RECEIVE, this server on SEND), server-ip /
server-hostname (this server on RECEIVE and DELIVER, the next hop on SEND), source-context (the
SMTP session id), connector-id (``SERVER\\Connector``), source, event-id,
internal-message-id (the queue's InternalId), message-id, network-message-id,
recipient-address and recipient-status (``;``-joined), total-bytes, recipient-count,
related-recipient-address and reference (a DSN: the recipients it reports on and the original's
Message-ID), message-subject, sender-address, return-path, directionality (``Originating`` for
an authenticated sender, else ``Incoming``), original-client-ip (the client a Front End
proxied), transport-traffic-type (``Email``), log-id (a GUID per line) and schema-version (the
server's build).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from exchsim.config.model import Server
from exchsim.logs.protocol import Clock, ProtocolLog
from exchsim.policy.headers import NETWORK_MESSAGE_ID, parse_message
from exchsim.policy.permissions import IdentityKind
from exchsim.smtp.message import AcceptedMessage

_log = logging.getLogger(__name__)
TRACKING_FIELDS = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,"
    "connector-id,source,event-id,internal-message-id,message-id,network-message-id,"
    "recipient-address,recipient-status,total-bytes,recipient-count,"
    "related-recipient-address,reference,message-subject,sender-address,return-path,"
    "message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,"
    "transport-traffic-type,log-id,schema-version"
)
FIELD_NAMES = tuple(TRACKING_FIELDS.split(","))
MAX_FILE_SIZE = 10 * 1024 * 1024
MAX_DIRECTORY_SIZE = 1000 * 1024 * 1024
MAX_AGE = datetime.timedelta(days=30)
HUB = "MSGTRK"
MAILBOX_DELIVERY = "MSGTRKMD"


class TrackingLog(ProtocolLog):
    """One kind of tracking file (``MSGTRK`` or ``MSGTRKMD``) in a server's directory."""

    fields = TRACKING_FIELDS

    def __init__(self, directory: Path, prefix: str, clock: Clock, version: str,
                 max_file_size: int | None = MAX_FILE_SIZE,
                 max_directory_size: int | None = MAX_DIRECTORY_SIZE,
                 max_age: datetime.timedelta = MAX_AGE) -> None:
        self._prefix = prefix
        self.version = version
        super().__init__(directory, "SmtpReceive", clock, max_file_size, max_directory_size,
                         max_age)

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def log_type(self) -> str:
        return "Message Tracking Log"


@dataclass(slots=True)
class Event:
    """One line; the names are the fields' with ``_`` for ``-``."""

    event_id: str
    source: str
    message_id: str = ""
    sender_address: str = ""
    recipients: Sequence[str] = ()
    recipient_status: Sequence[str] = ()
    client_ip: str = ""
    client_hostname: str = ""
    server_ip: str = ""
    server_hostname: str = ""
    source_context: str = ""
    connector_id: str = ""
    internal_message_id: str = ""
    network_message_id: str = ""
    total_bytes: str = ""
    related_recipient_address: str = ""
    reference: str = ""
    message_subject: str = ""
    message_info: str = ""
    directionality: str = ""
    original_client_ip: str = ""
    custom_data: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def row(self, schema_version: str) -> list[str]:
        values = {
            "client-ip": self.client_ip, "client-hostname": self.client_hostname,
            "server-ip": self.server_ip, "server-hostname": self.server_hostname,
            "source-context": self.source_context, "connector-id": self.connector_id,
            "source": self.source, "event-id": self.event_id,
            "internal-message-id": self.internal_message_id, "message-id": self.message_id,
            "network-message-id": self.network_message_id,
            "recipient-address": ";".join(self.recipients),
            "recipient-status": ";".join(self.recipient_status),
            "total-bytes": self.total_bytes,
            "recipient-count": str(len(self.recipients)),
            "related-recipient-address": self.related_recipient_address,
            "reference": self.reference, "message-subject": self.message_subject,
            "sender-address": self.sender_address, "return-path": self.sender_address,
            "message-info": self.message_info, "directionality": self.directionality,
            "original-client-ip": self.original_client_ip, "custom-data": self.custom_data,
            "transport-traffic-type": "Email", "log-id": str(uuid.uuid4()),
            "schema-version": schema_version,
        }
        return [values.get(name, "") for name in FIELD_NAMES[1:]]


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the header block of a message says, for the fields taken from it."""

    message_id: str
    network_message_id: str
    subject: str
    size: int
    directionality: str

    @classmethod
    def of(cls, data: bytes, message_id: str = "") -> MessageFacts:
        parsed = parse_message(data)
        auth_as = parsed.first("X-MS-Exchange-Organization-AuthAs")
        return cls(message_id or parsed.first("Message-ID") or "",
                   parsed.first(NETWORK_MESSAGE_ID) or "", parsed.first("Subject") or "",
                   len(data),
                   "Incoming" if auth_as in ("Anonymous", "Partner") else "Originating")


class MessageTracking:
    """A server's tracking log: one call per event; ``None`` logs switch it off."""

    def __init__(self, server: Server, hub: TrackingLog | None,
                 delivery: TrackingLog | None, subjects: bool = True) -> None:
        self.server = server
        self.hub = hub
        self.delivery = delivery
        self.subjects = subjects

    @classmethod
    def open(cls, server: Server, directory: Path, clock: Clock, *,
             max_file_size: int | None = MAX_FILE_SIZE,
             max_directory_size: int | None = MAX_DIRECTORY_SIZE,
             max_age: datetime.timedelta = MAX_AGE, subjects: bool = True) -> MessageTracking:
        version = server.exchange_version.long_build
        logs = [TrackingLog(directory, prefix, clock, version, max_file_size,
                            max_directory_size, max_age) for prefix in (HUB, MAILBOX_DELIVERY)]
        return cls(server, logs[0], logs[1], subjects)

    @classmethod
    def disabled(cls, server: Server | None = None) -> MessageTracking:
        return cls(server, None, None)  # type: ignore[arg-type]

    def _write(self, log: TrackingLog | None, event: Event, facts: MessageFacts | None) -> None:
        if log is None:
            return
        if facts is not None:
            event.message_id = event.message_id or facts.message_id
            event.network_message_id = event.network_message_id or facts.network_message_id
            event.total_bytes = event.total_bytes or str(facts.size)
            event.directionality = event.directionality or facts.directionality
            if self.subjects:
                event.message_subject = event.message_subject or facts.subject
        try:
            log.write(event.row(self.server.exchange_version.long_build))
        except (OSError, ValueError) as exc:  # a log that cannot be written never stops mail
            _log.warning("%s: message tracking log not written (%s)", self.server.name, exc)

    def close(self) -> None:
        for log in (self.hub, self.delivery):
            if log is not None:
                log.close()

    # -- the events -----------------------------------------------------------------------

    def receive(self, message: AcceptedMessage, item: Queued | None) -> None:
        """RECEIVE (source SMTP): the hub committed a message it took over SMTP."""
        if self.hub is None or item is None:
            return
        context = message.context
        self._write(self.hub, Event(
            "RECEIVE", "SMTP", message_id=item.message_id, sender_address=item.sender,
            recipients=item.recipients, client_ip=context.peer.ip,
            client_hostname=context.helo, server_ip=context.local.ip,
            server_hostname=self.server.name, source_context=context.session_id,
            connector_id=f"{self.server.name}\\{context.connector.name}",
            internal_message_id=str(item.internal_id),
            directionality=_directionality(message.facts.identity.kind),
            original_client_ip=message.client_ip if context.proxied is not None else "",
        ), MessageFacts.of(item.data, item.message_id))

    def send(self, item: Queued, recipients: Sequence[str], host: str, ip: str,
             connector: str) -> None:
        """SEND (source SMTP): the hub handed the message to the next hop."""
        if self.hub is None or not recipients:
            return
        self._write(self.hub, Event(
            "SEND", "SMTP", message_id=item.message_id, sender_address=item.sender,
            recipients=recipients, recipient_status=["250 2.1.5 Recipient OK"] * len(recipients),
            client_ip=self.server.service_address("Transport"), client_hostname=self.server.fqdn,
            server_ip=ip,
            server_hostname=host, connector_id=connector,
            internal_message_id=str(item.internal_id),
        ), MessageFacts.of(item.data, item.message_id))

    def fail(self, item: Queued, failed: Mapping[str, object], source: str = "") -> None:
        """FAIL: delivery to these recipients failed for good (recipient -> its reply);
        ``source`` ADMIN when an admin removed them (Remove-Message, exchange.md §8.5)."""
        if self.hub is None or not failed:
            return
        statuses = [_status(reply) for reply in failed.values()]
        source = source or ("ROUTING" if any("RESOLVER." in s or "ROUTING." in s
                                             for s in statuses) else "SMTP")
        self._write(self.hub, Event(
            "FAIL", source, message_id=item.message_id, sender_address=item.sender,
            recipients=list(failed), recipient_status=statuses,
            server_hostname=self.server.name,
            # 0: refused before it was queued (the organization's size limits)
            internal_message_id=str(item.internal_id) if item.internal_id else "",
        ), MessageFacts.of(item.data, item.message_id))

    def dsn(self, ndr: Queued, about: Iterable[str], original: Queued | None) -> None:
        """DSN (source DSN): an NDR (or other DSN) was made for ``about``."""
        if self.hub is None:
            return
        self._write(self.hub, Event(
            "DSN", "DSN", message_id=ndr.message_id, sender_address=ndr.sender,
            recipients=ndr.recipients, server_hostname=self.server.name,
            internal_message_id=str(ndr.internal_id),
            related_recipient_address=";".join(about),
            reference=original.message_id if original is not None else "",
        ), MessageFacts.of(ndr.data, ndr.message_id))

    def defer(self, item: Queued, deferred: Mapping[str, str]) -> None:
        """DEFER: a transient failure; the recipients wait for their next attempt."""
        if self.hub is None or not deferred:
            return
        self._write(self.hub, Event(
            "DEFER", "SMTP", message_id=item.message_id, sender_address=item.sender,
            recipients=list(deferred), recipient_status=list(deferred.values()),
            server_hostname=self.server.name, internal_message_id=str(item.internal_id),
        ), MessageFacts.of(item.data, item.message_id))

    def poison(self, item: Queued, reason: str) -> None:
        """POISONMESSAGE (source POISONMESSAGE): the message went to the Poison queue."""
        if self.hub is None:
            return
        self._write(self.hub, Event(
            "POISONMESSAGE", "POISONMESSAGE", message_id=item.message_id,
            sender_address=item.sender, recipients=item.recipients,
            server_hostname=self.server.name, internal_message_id=str(item.internal_id),
            custom_data=reason,
        ), MessageFacts.of(item.data, item.message_id))

    def deliver(self, message: AcceptedMessage, data: bytes, message_id: str,
                duplicates: Sequence[str]) -> None:
        """DELIVER / DUPLICATEDELIVER (source STOREDRIVER), in the MSGTRKMD files."""
        if self.delivery is None:
            return
        facts = MessageFacts.of(data, message_id)
        delivered = [r for r in message.recipients if r not in duplicates]
        context = message.context
        for event_id, rcpts in (("DELIVER", delivered), ("DUPLICATEDELIVER", duplicates)):
            if rcpts:
                self._write(self.delivery, Event(
                    event_id, "STOREDRIVER", sender_address=message.mail_from,
                    recipients=list(rcpts), client_ip=context.peer.ip,
                    client_hostname=context.helo, server_ip=context.local.ip,
                    server_hostname=self.server.name, source_context=context.session_id,
                ), facts)


def _directionality(kind: IdentityKind) -> str:
    """Originating for mail the organization's own users or servers sent (AuthAs Internal),
    Incoming for everything else (anonymous and partner mail)."""
    return "Originating" if kind in (IdentityKind.USER, IdentityKind.EXTERNALLY_SECURED,
                                     IdentityKind.EXCHANGE_SERVER) else "Incoming"


def _status(reply: object) -> str:
    """A reply's one-line text (a ``Reply`` renders itself; anything else is its str)."""
    render = getattr(reply, "render", None)
    text = render() if callable(render) else str(reply)
    return str(text).split("\r\n")[0]


class Queued(Protocol):
    """What the events read of a queued message (transport/queue.py's QueuedMessage)."""

    @property
    def internal_id(self) -> int: ...
    @property
    def message_id(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def recipients(self) -> tuple[str, ...]: ...
    @property
    def data(self) -> bytes: ...
