"""Delivery status notifications sent by the hub: NDRs, delay, success and relay DSNs
(RFC 3461, RFC 3464; exchange.md §8.4, §12.6).

Who gets what is policy/dsn.py's; how a report looks is transport/ndr.py's. This module makes
one, queues it (null reverse path, to the original's sender), logs its DSN event
(logs/tracking.py) and hands it to the delivery agent. Its callers are small hooks:

- the delivery agent (transport/delivery.py): :meth:`Notifier.failed` for recipients that
  failed for good (an NDR, also the expiry NDR ``550 4.4.7 QUEUE.Expired; message expired``
  after MessageExpirationTimeout), :meth:`Notifier.delayed` after each deferral (one delay DSN
  per recipient, once the message waited the server's DelayNotificationTimeout),
  :meth:`Notifier.delivered` for recipients a next hop accepted ("Delivered" for Mailbox
  Transport Delivery, "Relayed" for a next hop outside the organization);
- the hub's receiver (transport/hub.py): :meth:`Notifier.failed` for recipients the
  organization's size limits refused.

Every report's Message-ID is derived from the original (its Network-Message-Id), the kind of
report and its recipients (``ndr_message_id``), so one made again after a crash between
queueing it and recording it is recognised downstream as the same message. A delay DSN is
recorded in the original's metadata (``delay_dsn``: the recipients it covered) right after it
is queued; those recipients never get a second one.

Choices where the sources are silent (exchange.md §12.6): the delay DSN goes out with the first
deferral at or after DelayNotificationTimeout (so up to one retry interval late), not from a
timer of its own; a recipient relayed to the lab's internet sink gets "Relayed", as the sink
(plain aiosmtpd) does not offer DSN, so the request cannot travel on (RFC 3461 §6.2.1(c)).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from exchsim.clock import Clock
from exchsim.config.model import Organization, Server
from exchsim.logs.tracking import MessageTracking
from exchsim.policy import dsn, replies
from exchsim.policy.dsn import Notify
from exchsim.policy.headers import parse_message, send_firewall
from exchsim.policy.replies import Reply
from exchsim.transport.ndr import DsnKind, build_dsn, envelope_of, ndr_message_id
from exchsim.transport.queue import MessageQueue, QueuedMessage

__all__ = ["Notifier", "ndr_original", "postmaster_of"]

Write = Callable[[Awaitable[Any]], Awaitable[Any]]


async def _as_is(operation: Awaitable[Any]) -> Any:
    return await operation


class Notifier:
    """Makes and queues the notifications of one hub."""

    def __init__(self, org: Organization, server: Server, clock: Clock, queue: MessageQueue,
                 tracking: MessageTracking, submit: Callable[[QueuedMessage], None], *,
                 expiration: datetime.timedelta, write: Write = _as_is) -> None:
        self.org = org
        self.server = server
        self.clock = clock
        self.queue = queue
        self.tracking = tracking
        self.submit = submit
        self.expiration = expiration
        self.write = write  # the delivery agent's: a queue write that fails stops it

    async def failed(self, item: QueuedMessage,
                     failed: Mapping[str, Reply]) -> QueuedMessage | None:
        """An NDR for the failed recipients that did not say NOTIFY=NEVER (or without
        FAILURE); none for the null sender or a report."""
        rcpts = self._wanting(item, failed, Notify.FAILURE)
        if not rcpts:
            return None
        return await self._send(DsnKind.FAILED, item, rcpts,
                                {r: failed[r].render() for r in rcpts})

    async def delayed(self, item: QueuedMessage, deferred: Sequence[str]) -> None:
        """A delay DSN for deferred recipients once the message waited DelayNotificationTimeout
        (each recipient once)."""
        waited = self.clock.utc() - item.received_at
        if waited < self.server.delay_notification_timeout or not item.sender:
            return
        if not dsn.delay_wanted(self.org, item.sender):
            return
        already = dsn.delay_sent(item.metadata)
        rcpts = [r for r in self._wanting(item, deferred, Notify.DELAY) if r not in already]
        if not rcpts:
            return
        delayed = replies.MESSAGE_DELAYED.render()
        await self._send(DsnKind.DELAYED, item, rcpts, dict.fromkeys(rcpts, delayed),
                         remaining=self.expiration - waited)
        await self.write(self.queue.note(item.internal_id, {
            dsn.DELAY_SENT_KEY: ";".join(sorted(already | set(rcpts)))}))

    async def delivered(self, item: QueuedMessage, rcpts: Sequence[str], *,
                        relayed: bool, passed_on: bool = False) -> None:
        """A success DSN for recipients that asked NOTIFY=SUCCESS: "Delivered" when Mailbox
        Transport Delivery took the message, "Relayed" when it left for a next hop that does
        not carry the request on. ``passed_on``: the next hop offered DSN and got the
        recipients' NOTIFY and ORCPT (and RET, ENVID): reporting is then its business, and
        this hub sends nothing (RFC 3461 §6.2.1(a)); the lab's internet sink offers no DSN."""
        if passed_on:
            return
        wanting = self._wanting(item, rcpts, Notify.SUCCESS)
        if wanting:
            ok = replies.RECIPIENT_OK.render()
            await self._send(DsnKind.RELAYED if relayed else DsnKind.DELIVERED, item, wanting,
                             dict.fromkeys(wanting, ok))

    def _wanting(self, item: QueuedMessage, rcpts: Sequence[str] | Mapping[str, object],
                 what: Notify) -> list[str]:
        if not item.sender:
            return []  # nothing to the null sender
        wanting = dsn.recipients_wanting(dsn.decode(item.metadata), list(rcpts), what)
        if wanting and _is_report(item.data):
            return []  # nothing answers a report
        return wanting

    async def _send(self, kind: DsnKind, item: QueuedMessage, rcpts: Sequence[str],
                    reasons: Mapping[str, str],
                    remaining: datetime.timedelta | None = None) -> QueuedMessage:
        original = item.metadata.get("network_message_id") or f"internal-id:{item.internal_id}"
        if kind is not DsnKind.FAILED:  # an NDR keeps the Message-ID it always had
            original += f"|{kind.name}"
        message_id = ndr_message_id(original, rcpts, self.server.fqdn)
        data = build_dsn(
            kind,
            message_id=message_id,
            postmaster=postmaster_of(self.org),
            sender=item.sender,
            recipients=rcpts,
            reasons=reasons,
            original=ndr_original(self.org, item.sender, item.data),
            reporting_mta=self.server.fqdn,
            now=self.clock.local(self.server.zone),
            envelope=envelope_of(item.metadata, item.received_at),
            remaining=remaining,
        )
        report: QueuedMessage = await self.write(self.queue.enqueue(
            message_id=message_id,
            sender="",
            recipients=[item.sender],
            data=data,
            metadata={"ndr_for": str(item.internal_id) if item.internal_id else "size",
                      "dsn": kind.value[2]},
            now=self.clock.utc(),
        ))
        self.tracking.dsn(report, rcpts, item)
        self.submit(report)
        return report


def _is_report(data: bytes) -> bool:
    parsed = parse_message(data)
    return dsn.is_report(parsed.first("Content-Type"),
                         parsed.first("X-MS-Exchange-Message-Is-Ndr") is not None)


def ndr_original(org: Organization, sender: str, original: bytes) -> bytes:
    """The original as a report to ``sender`` attaches it: without organization and forest
    headers when the report leaves the organization (exchange.md §12.5, S6-06/07); whole when
    it goes to a mailbox of the organization, as every hop inside keeps them
    (exchange.md §5.1)."""
    address = sender.lower()
    inside = any(address in mailbox.addresses for mailbox in org.mailboxes)
    return send_firewall(original, exchange_of_organization=inside)


def postmaster_of(org: Organization) -> str:
    """Who reports come from: ExternalPostmasterAddress, else postmaster@<default domain>."""
    return (org.transport_config.external_postmaster_address
            or f"postmaster@{org.default_domain}")
