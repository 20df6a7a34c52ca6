"""Mailbox Transport Delivery (475): store each recipient's copy in its Maildir (exchange.md §7.5).

The hub reaches this service over a hop session (X-ANONYMOUSTLS, EXCHANGEAUTH,
XSESSIONPARAMS). Each recipient gets one Maildir file under ``DATA/mailboxes/<address>/``,
written with fsync before the reply.

Duplicate delivery: like Exchange's mailbox store (a message whose Internet Message-ID the
mailbox already holds is dropped; message tracking event DUPLICATEDELIVER), a recipient's
copy is dropped when that Maildir already holds a message with the same Message-ID. The
Maildir file name carries a hash of (Message-ID, recipient address), so the check is the
store's in-memory index of file names (transport/maildir.py), kept for as long as the file is
in ``new/`` or ``cur/``. The reply is still ``250``: for the hub the message is delivered. One
key covers both cases:
- the hub delivering again after a crash between "stored" and "acknowledged" (the same queued
  message, so the same Message-ID): idempotent as before, when the key was the
  Network-Message-Id;
- a client sending the same message again after an ambiguous 4xx (the Front End answers one
  when the hub may or may not have committed it, transport/frontend.py): a second queue entry,
  but one copy per mailbox.
Choices where the sources are silent: the Message-ID is compared exactly as written (after
unfolding), per recipient address (each address has its own Maildir), with no time window; a
message without a Message-ID (the hub always adds one, so only one sent straight to 475) is
keyed by its Network-Message-Id, or a hash of its bytes. A dropped copy is logged at INFO as
``DUPLICATEDELIVER``. Maildir files written before this rule (keyed by Network-Message-Id)
are not recognised as the same message.

The files of messages that arrive together (the hub delivers over several sessions at once)
are written as one batch on one worker thread, sharing the fsync of each ``new/`` directory.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
from pathlib import Path

from exchsim.clock import Clock
from exchsim.config.model import Server
from exchsim.logs.tracking import MessageTracking
from exchsim.policy import replies
from exchsim.policy.dialect import Dialect
from exchsim.policy.headers import (
    BCC_FOLDERING,
    END_TO_END_LATENCY,
    NETWORK_MESSAGE_ID,
    Message,
    end_to_end_latency,
    make_field,
    network_message_time,
    parse_message,
)
from exchsim.policy.replies import Reply
from exchsim.smtp.message import AcceptedMessage
from exchsim.transport.groupcommit import GroupCommit
from exchsim.transport.maildir import MaildirStore, MessageFiles, unique_token
from exchsim.transport.received import received_for

log = logging.getLogger(__name__)
# The queue keeps a message at most MessageExpirationTimeout (2 days by default): a
# Network-Message-Id older than this is not one of this organization's.
_PLAUSIBLE = datetime.timedelta(days=30)


class MailboxDeliveryReceiver:
    """The MessageHandler of the MailboxDelivery connector."""

    def __init__(self, server: Server, clock: Clock, root: Path,
                 tracking: MessageTracking | None = None) -> None:
        self.server = server
        self.tracking = tracking or MessageTracking.disabled(server)
        self.clock = clock
        self._store = MaildirStore(root)
        self._writer: GroupCommit[MessageFiles, list[str]] = GroupCommit(
            self._store.store_messages, name=f"maildir-{server.name}")

    async def __call__(self, message: AcceptedMessage) -> Reply:
        parsed = parse_message(message.data)
        network_id = parsed.first(NETWORK_MESSAGE_ID) or hashlib.sha256(message.data).hexdigest()
        internet_id = parsed.first("Message-ID")
        key = f"message-id:{internet_id}" if internet_id else f"network-id:{network_id}"
        received = received_for(self.server, self.clock, message, "Mailbox Transport")
        stamped = self._delivered(parsed, message).prepend(received).to_bytes()
        duplicates = await self._writer.submit(tuple(
            (rcpt, stamped, unique_token(key, rcpt)) for rcpt in message.recipients))
        message_id = internet_id or f"<{network_id}@{self.server.fqdn}>"
        self.tracking.deliver(message, stamped, message_id, duplicates)
        for rcpt in duplicates:
            log.info("DUPLICATEDELIVER %s to %s: already in the mailbox, dropped",
                     replies.echoed_id(message_id), rcpt)
        return replies.queued(
            message_id, 0, self.server.fqdn, size=len(message.data),
            seconds=message.received_seconds, dialect=Dialect.of(self.server.version),
        )

    def _delivered(self, parsed: Message, message: AcceptedMessage) -> Message:
        """The last X-MS headers, as mailbox delivery adds them (exchange.md §12.2): the time
        since the organization accepted the message (the time in its Network-Message-Id;
        this session's own time when it has none of that form, or one implausibly far off)
        and this server's build."""
        now = self.clock.utc()
        arrived = network_message_time(parsed.first(NETWORK_MESSAGE_ID) or "")
        seconds = message.received_seconds
        if arrived is not None and datetime.timedelta(0) <= now - arrived <= _PLAUSIBLE:
            seconds = (now - arrived).total_seconds()
        latency = make_field(END_TO_END_LATENCY, end_to_end_latency(seconds))
        folding = make_field(BCC_FOLDERING, self.server.exchange_version.long_build)
        kept = parsed.without((END_TO_END_LATENCY.lower().encode(),
                               BCC_FOLDERING.lower().encode()))
        return Message((*kept.fields, latency, folding), kept.body, kept.has_separator)

    def session_closed(self, session_id: str) -> None:
        pass  # nothing is kept per session

    async def close(self) -> None:
        await self._writer.close()

