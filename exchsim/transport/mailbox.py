"""Mailbox Transport Delivery (475): store each recipient's copy in its Maildir (exchange.md §7.5).

The hub reaches this service over a hop session (X-ANONYMOUSTLS, EXCHANGEAUTH,
XSESSIONPARAMS). Each recipient gets one Maildir file under ``DATA/mailboxes/<address>/``,
written with fsync before the reply. The unique name carries the hub's Network-Message-Id, so
a message the hub delivers again after a crash is recognised and not stored twice.

The files of messages that arrive together (the hub delivers over several sessions at once)
are written as one batch on one worker thread, sharing the fsync of each ``new/`` directory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from exchsim.clock import Clock
from exchsim.config.model import Server
from exchsim.policy import replies
from exchsim.policy.dialect import Dialect
from exchsim.policy.headers import NETWORK_MESSAGE_ID, parse_message
from exchsim.policy.replies import Reply
from exchsim.smtp.message import AcceptedMessage
from exchsim.transport.groupcommit import GroupCommit
from exchsim.transport.maildir import MaildirStore
from exchsim.transport.received import received_for

_Files = tuple[tuple[str, bytes, str], ...]  # one message's (address, data, unique) per recipient


class MailboxDeliveryReceiver:
    """The MessageHandler of the MailboxDelivery connector."""

    def __init__(self, server: Server, clock: Clock, root: Path) -> None:
        self.server = server
        self.clock = clock
        self._store = MaildirStore(root)
        self._writer: GroupCommit[_Files, None] = GroupCommit(
            self._store_batch, name=f"maildir-{server.name}")

    async def __call__(self, message: AcceptedMessage) -> Reply:
        parsed = parse_message(message.data)
        network_id = parsed.first(NETWORK_MESSAGE_ID) or hashlib.sha256(message.data).hexdigest()
        received = received_for(self.server, self.clock, message, "Mailbox Transport")
        stamped = parsed.prepend(received).to_bytes()
        await self._writer.submit(tuple(
            (rcpt, stamped, _unique(network_id, rcpt)) for rcpt in message.recipients))
        message_id = parsed.first("Message-ID") or f"<{network_id}@{self.server.fqdn}>"
        return replies.queued(
            message_id, 0, self.server.fqdn, size=len(message.data),
            seconds=message.received_seconds, dialect=Dialect.of(self.server.version),
        )

    def session_closed(self, session_id: str) -> None:
        pass  # nothing is kept per session

    def _store_batch(self, messages: Sequence[_Files]) -> list[None]:
        self._store.store([file for files in messages for file in files])
        return [None] * len(messages)

    async def close(self) -> None:
        await self._writer.close()


def _unique(network_id: str, recipient: str) -> str:
    return hashlib.sha1(f"{network_id}|{recipient.lower()}".encode()).hexdigest()[:20]
