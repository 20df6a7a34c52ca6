"""Mailbox Transport Delivery (475): store each recipient's copy in its Maildir (§7.5).

The hub reaches this service over a hop session (X-ANONYMOUSTLS, EXCHANGEAUTH,
XSESSIONPARAMS). Each recipient gets one Maildir file under ``DATA/mailboxes/<address>/``,
written with fsync before the reply. The unique name carries the hub's Network-Message-Id, so
a message the hub delivers again after a crash is recognised and not stored twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from exchsim.config.model import Server
from exchsim.policy import replies
from exchsim.policy.headers import NETWORK_MESSAGE_ID, parse_message
from exchsim.policy.replies import Reply
from exchsim.smtp.session import AcceptedMessage, ExchangeSMTP, received_for
from exchsim.transport import maildir


class MailboxDeliveryReceiver:
    """The MessageHandler of the MailboxDelivery connector."""

    def __init__(self, server: Server, root: Path) -> None:
        self.server = server
        self.root = root

    async def __call__(self, session: ExchangeSMTP, message: AcceptedMessage) -> Reply:
        parsed = parse_message(message.data)
        network_id = parsed.first(NETWORK_MESSAGE_ID) or hashlib.sha256(message.data).hexdigest()
        stamped = parsed.prepend(received_for(session, message, "Mailbox Transport")).to_bytes()
        await asyncio.to_thread(self._store, network_id, message.recipients, stamped)
        message_id = parsed.first("Message-ID") or f"<{network_id}@{self.server.fqdn}>"
        return replies.queued(
            message_id, 0, self.server.fqdn, size=len(message.data),
            seconds=message.received_seconds, version=self.server.version,
        )

    def _store(self, network_id: str, recipients: tuple[str, ...], data: bytes) -> None:
        for rcpt in recipients:
            unique = hashlib.sha1(f"{network_id}|{rcpt.lower()}".encode()).hexdigest()[:20]
            if not maildir.already_delivered(self.root, rcpt, unique):
                maildir.deliver(self.root, rcpt, data, unique=unique)
