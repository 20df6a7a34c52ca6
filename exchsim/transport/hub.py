"""Transport (hub): accept into the durable queue, categorize, route, deliver (exchange.md §7, §8).

Receiving: end-of-headers checks, the header firewall with the session's (or the proxied
client's) rights, authentication stamping, a Received header, then a durable enqueue (fsync)
before the ``250 2.6.0 <id> [InternalId=..., Hostname=<hub>] ...`` reply.

Delivering: the receiver hands each committed message to the delivery agent in memory (the
queue is the truth: the agent also scans it at start, every half RetryInterval and when more
than it keeps in memory are waiting), which delivers up to 8 messages at once over idle hop
sessions it keeps open, and sorts each recipient:
- a mailbox of the organization -> Mailbox Transport Delivery (475) of the mailbox's server,
  over a hop session (X-ANONYMOUSTLS, EXCHANGEAUTH, XSESSIONPARAMS, BDAT);
- another address in an Authoritative accepted domain -> an NDR (RFC 3464) from postmaster of
  the default domain: ``550 5.1.1 RESOLVER.ADR.RecipNotFound; not found`` (exchange.md §8.1),
  whose Message-ID is derived from the original and the recipients (:func:`ndr_message_id`),
  so an NDR made twice across a crash is recognised downstream as one message;
- anything else (InternalRelay / ExternalRelay domains, relayed mail) -> the lab's internet
  sink over plain SMTP (send connectors come with the multi-server roadmap item).
A failed delivery is deferred and retried after ``Lab.RetryInterval``; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import logging
import ssl
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiosmtplib

from exchsim.clock import Clock
from exchsim.config.model import DomainType, Lab, Organization, Server
from exchsim.policy import replies, rules
from exchsim.policy.dialect import Dialect
from exchsim.policy.headers import (
    NETWORK_MESSAGE_ID,
    Message,
    firewall,
    make_field,
    parse_message,
    sender_addresses,
    stamp_authentication,
)
from exchsim.policy.replies import Reply, queued
from exchsim.smtp.message import AcceptedMessage
from exchsim.transport.hopclient import HopClient, HopError
from exchsim.transport.queue import MessageQueue, QueuedMessage
from exchsim.transport.received import received_for

log = logging.getLogger(__name__)

_MAX_READY = 1000  # messages handed over in memory, waiting for a delivery slot

class HubReceiver:
    """The MessageHandler of HubTransport connectors."""

    def __init__(self, server: Server, clock: Clock, queue: MessageQueue,
                 deliver: Callable[[QueuedMessage], None]) -> None:
        self.server = server
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
        out = stamp_authentication(
            out,
            rights=facts.rights,
            auth_as=rules.auth_as(facts, auth_null),
            mechanism=facts.identity.mechanism,
            server_fqdn=self.server.fqdn,
            auth_domain=facts.identity.name or None,
        )
        message_id = out.first("Message-ID")
        extra = []
        if not message_id:
            message_id = f"<{uuid.uuid4()}@{self.server.fqdn}>"
            extra.append(make_field("Message-ID", message_id))
        network_id = out.first(NETWORK_MESSAGE_ID)
        if network_id is None:
            network_id = str(uuid.uuid4())
            extra.append(make_field(NETWORK_MESSAGE_ID, network_id))
        received = received_for(self.server, self.clock, message)
        data = Message((received, *out.fields, *extra), out.body, out.has_separator).to_bytes()
        too_big = rules.over_organization_limits(
            facts, message.mail_from, message.recipients, len(message.data))
        recipients = [r for r in message.recipients if r not in too_big]
        item = None
        if recipients:
            item = await self.queue.enqueue(
                message_id=message_id,
                sender=message.mail_from,
                recipients=recipients,
                data=data,
                metadata={"network_message_id": network_id, "client_ip": message.client_ip},
                now=self.clock.utc(),
            )
            self.deliver(item)
        if too_big and message.mail_from:
            ndr = await self._size_ndr(facts.org, message.mail_from, too_big, data, network_id)
            item = item or ndr
        return queued(
            message_id,
            item.internal_id if item is not None else 0,
            self.server.fqdn,
            size=len(message.data),
            seconds=message.received_seconds,
            dialect=Dialect.of(self.server.version),
        )

    async def _size_ndr(self, org: Organization, sender: str, recipients: Sequence[str],
                        original: bytes, network_id: str) -> QueuedMessage:
        """The NDR for recipients the organization's size limits refused (exchange.md §8.3)."""
        reason = replies.RECIPIENT_SIZE_LIMIT.render()
        message_id = ndr_message_id(network_id, recipients, self.server.fqdn)
        data = build_ndr(
            message_id=message_id, postmaster=postmaster_of(org), sender=sender,
            recipients=recipients,
            reasons=dict.fromkeys(recipients, reason), original=original,
            reporting_mta=self.server.fqdn, now=self.clock.local(),
        )
        item = await self.queue.enqueue(
            message_id=message_id, sender="", recipients=[sender],
            data=data, metadata={"ndr_for": "size"}, now=self.clock.utc(),
        )
        self.deliver(item)
        return item

    def session_closed(self, session_id: str) -> None:
        pass  # nothing is kept per session


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # "mailbox" | "ndr" | "internet"
    server: str | None = None


def categorize(lab: Lab, recipient: str) -> Route:
    address = recipient.lower()
    for mailbox in lab.organization.mailboxes:
        if address in mailbox.addresses:
            return Route("mailbox", mailbox.server)
    domain = rules.match_accepted_domain(lab.organization.accepted_domains,
                                         rules.domain_of(address))
    if domain is not None and domain.domain_type is DomainType.AUTHORITATIVE:
        return Route("ndr")
    return Route("internet")


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int


class DeliveryAgent:
    """Takes due messages from one hub's queue and delivers them."""

    def __init__(
        self,
        lab: Lab,
        server: Server,
        clock: Clock,
        queue: MessageQueue,
        tls_context: Callable[[], ssl.SSLContext | None],
        mailbox_delivery: Mapping[str, Endpoint],
        internet: Endpoint,
        retry: datetime.timedelta,
        concurrency: int = 8,
    ) -> None:
        self.lab = lab
        self.server = server
        self.clock = clock
        self.queue = queue
        self.tls_context = tls_context
        self.mailbox_delivery = mailbox_delivery
        self.internet = internet
        self.retry = retry
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._ready: deque[QueuedMessage] = deque()
        self._scan_requested = True
        self._idle_hops: dict[str, list[HopClient]] = defaultdict(list)
        self._inflight: set[int] = set()

    def submit(self, item: QueuedMessage) -> None:
        """A message just committed to the queue: deliver it without reading it back.

        The queue stays the truth: a message not handed over here (the list is full, or the
        process restarted) is found by the next scan of the queue.
        """
        if len(self._ready) < _MAX_READY:
            self._ready.append(item)
        else:
            self._scan_requested = True
        self._wake.set()

    async def run(self) -> None:
        """Deliver what is handed over, and scan the queue at start, after a full list, and
        every half RetryInterval (deferred messages become due)."""
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        period = self.retry.total_seconds() / 2 or 1.0
        next_scan = loop.time()
        try:
            while True:
                self._wake.clear()
                if (self._scan_requested and not self._ready) or loop.time() >= next_scan:
                    self._scan_requested = False
                    next_scan = loop.time() + period
                    queued = {item.internal_id for item in self._ready}
                    found = await self.queue.due(self.clock.utc(), limit=_MAX_READY,
                                                 exclude=frozenset(self._inflight | queued))
                    if len(found) >= _MAX_READY:
                        self._scan_requested = True  # a full page: more may be due
                    # Handed over while the scan ran: keep one copy.
                    queued = {item.internal_id for item in self._ready}
                    self._ready.extend(i for i in found if i.internal_id not in queued)
                while self._ready:
                    item = self._ready.popleft()
                    if item.internal_id in self._inflight:
                        continue
                    self._inflight.add(item.internal_id)
                    await sem.acquire()
                    task = loop.create_task(self._deliver(item, sem))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if not self._scan_requested:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(),
                                               max(next_scan - loop.time(), 0.0))
        finally:
            for task in tasks:
                task.cancel()
            for hops in self._idle_hops.values():
                for hop in hops:
                    hop.abort()

    async def _deliver(self, item: QueuedMessage, sem: asyncio.Semaphore) -> None:
        try:
            groups: dict[Route, list[str]] = defaultdict(list)
            for rcpt in item.recipients:
                groups[categorize(self.lab, rcpt)].append(rcpt)
            for route, rcpts in groups.items():
                await self._deliver_group(item, route, rcpts)
        except Exception:
            log.exception("delivery of %s failed", item.internal_id)
        finally:
            self._inflight.discard(item.internal_id)
            sem.release()

    async def _deliver_group(self, item: QueuedMessage, route: Route,
                             rcpts: list[str]) -> None:
        if route.kind == "ndr":
            if item.sender:
                await self._ndr(item, rcpts)
            await self.queue.complete(item.internal_id, rcpts)
            return
        try:
            if route.kind == "mailbox":
                assert route.server is not None
                refused = await self._to_mailbox(route.server, item, rcpts)
            else:
                refused = await self._to_internet(item, rcpts)
        except (HopError, OSError, aiosmtplib.SMTPException, TimeoutError) as exc:
            await self.queue.defer(
                item.internal_id, rcpts,
                next_attempt_at=self.clock.utc() + self.retry, reason=str(exc),
            )
            return
        permanent = [r for r, reply in refused if reply.code >= 500]
        temporary = [r for r, reply in refused if reply.code < 500]
        done = [r for r in rcpts if r not in temporary]
        if permanent and item.sender:
            await self._ndr(item, permanent, refused)
        if done:
            await self.queue.complete(item.internal_id, done)
        if temporary:
            await self.queue.defer(item.internal_id, temporary,
                                   next_attempt_at=self.clock.utc() + self.retry,
                                   reason="temporary refusal")

    async def _to_mailbox(self, server: str, item: QueuedMessage,
                          rcpts: list[str]) -> list[tuple[str, Reply]]:
        endpoint = self.mailbox_delivery[server.lower()]
        hop = await self._take_hop(server, endpoint)
        try:
            params = f"SIZE={len(item.data)}"
            if _needs_smtputf8(item.sender, rcpts):
                params += " SMTPUTF8"
            result = await hop.send_message(item.sender, params, rcpts, item.data)
        except BaseException:
            hop.abort()
            raise
        self._idle_hops[server.lower()].append(hop)
        if result.reply.code != 250:
            if result.reply.code >= 500:
                return [(r, result.reply) for r in rcpts]
            raise HopError(f"mailbox delivery refused: {result.reply.render()}")
        return list(result.refused)

    async def _take_hop(self, server: str, endpoint: Endpoint) -> HopClient:
        idle = self._idle_hops[server.lower()]
        while idle:
            hop = idle.pop()
            if not hop.broken:
                return hop
        context = self.tls_context()
        if context is None:
            raise HopError("no internal transport certificate")
        hop = await HopClient.connect(endpoint.host, endpoint.port, helo=self.server.fqdn,
                                      tls_context=context, source=self.server.address)
        try:
            reply = await hop.command("XSESSIONPARAMS MDBGUID=00000000-0000-0000-0000-000000000000"
                                      " TYPE=Delivery")
            if reply.code != 250:
                raise HopError(f"XSESSIONPARAMS refused: {reply.render()}", reply)
        except BaseException:
            hop.abort()
            raise
        return hop

    async def _to_internet(self, item: QueuedMessage,
                           rcpts: list[str]) -> list[tuple[str, Reply]]:
        # The SMTP client rather than aiosmtplib.send: an NDR's reverse path is empty.
        options = ["SMTPUTF8"] if _needs_smtputf8(item.sender, rcpts) else []
        async with aiosmtplib.SMTP(
            hostname=self.internet.host,
            port=self.internet.port,
            local_hostname=self.server.fqdn,
            source_address=(self.server.address, 0),
            start_tls=False,
            use_tls=False,
            timeout=30,
        ) as smtp:
            errors, _ = await smtp.sendmail(item.sender, rcpts, item.data, mail_options=options)
        return [(r, Reply(code, None, text)) for r, (code, text) in errors.items()]

    async def _ndr(self, item: QueuedMessage, rcpts: Sequence[str],
                   refused: Sequence[tuple[str, Reply]] = ()) -> None:
        postmaster = postmaster_of(self.lab.organization)
        reasons = dict(refused)
        original = item.metadata.get("network_message_id") or f"internal-id:{item.internal_id}"
        message_id = ndr_message_id(original, rcpts, self.server.fqdn)
        data = build_ndr(
            message_id=message_id,
            postmaster=postmaster,
            sender=item.sender,
            recipients=rcpts,
            reasons={r: (reasons.get(r) or replies.RECIPIENT_NOT_FOUND).render() for r in rcpts},
            original=item.data,
            reporting_mta=self.server.fqdn,
            now=self.clock.local(),
        )
        self.submit(await self.queue.enqueue(
            message_id=message_id,
            sender="",
            recipients=[item.sender],
            data=data,
            metadata={"ndr_for": str(item.internal_id)},
            now=self.clock.utc(),
        ))


def postmaster_of(org: Organization) -> str:
    """Who NDRs come from: ExternalPostmasterAddress, else postmaster@<default domain>."""
    return (org.transport_config.external_postmaster_address
            or f"postmaster@{org.default_domain}")


def _needs_smtputf8(sender: str, recipients: Sequence[str]) -> bool:
    """RFC 6531: a non-ASCII address travels only in an SMTPUTF8 transaction."""
    return not (sender.isascii() and all(r.isascii() for r in recipients))


_NDR_NAMESPACE = uuid.UUID("5b0c6d4e-3f0a-4c53-9d2e-6e4dc1a7f3b1")  # ndr_message_id's


def ndr_message_id(original: str, recipients: Sequence[str], fqdn: str) -> str:
    """The Message-ID of the NDR for ``recipients`` of the message ``original`` names (its
    Network-Message-Id, or its InternalId if it has none): the same every time that NDR is
    made, so one made again (the hub was stopped after it queued the NDR and before it
    recorded the recipients as done) is recognised downstream as the same message
    (DUPLICATEDELIVER, transport/mailbox.py, smtp/sink.py). A UUID (version 5) of the
    original and the recipients."""
    key = "|".join([original, *sorted(r.lower() for r in recipients)])
    return f"<{uuid.uuid5(_NDR_NAMESPACE, key)}@{fqdn}>"


def build_ndr(
    *,
    message_id: str,
    postmaster: str,
    sender: str,
    recipients: Sequence[str],
    reasons: Mapping[str, str],
    original: bytes,
    reporting_mta: str,
    now: datetime.datetime,
) -> bytes:
    """A delivery status notification (RFC 3464) with the original headers attached."""
    boundary = f"exchsim-{uuid.uuid4().hex}"
    headers_end = original.find(b"\r\n\r\n")
    original_headers = original[: headers_end + 2] if headers_end >= 0 else original
    lines = [
        f"From: Microsoft Outlook <{postmaster}>",
        f"To: <{sender}>",
        "Subject: Undeliverable:",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "Auto-Submitted: auto-replied",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Delivery has failed to these recipients or groups:",
        "",
        *[f"{r}: {reasons[r]}" for r in recipients],
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns;{reporting_mta}",
        "",
    ]
    for r in recipients:
        code = reasons[r].split(" ")[1] if " " in reasons[r] else "5.0.0"
        lines += [
            f"Final-Recipient: rfc822;{r}",
            "Action: failed",
            f"Status: {code}",
            f"Diagnostic-Code: smtp;{reasons[r]}",
            "",
        ]
    lines += [f"--{boundary}", "Content-Type: text/rfc822-headers", ""]
    body = "\r\n".join(lines).encode() + b"\r\n" + original_headers
    return body + f"\r\n--{boundary}--\r\n".encode()
