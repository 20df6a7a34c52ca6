"""The lab's internet: an SMTP server that stores what it receives (exchange.md §8.2).

Relayed mail and NDRs from the hubs end here, one Maildir per recipient under
``DATA/internet/<address>/``, each file fsynced before the 250. It is a plain aiosmtpd
server on purpose: it plays "some MTA on the internet", not Exchange.

Like a real MTA it refuses, at RCPT, an address it has no mailbox name for: one with ``/`` or
NUL, ``.`` or ``..``, or too long for a directory name (:func:`transport.maildir.mailbox_path`) gets
``553 5.1.3 Mailbox name not allowed`` (RFC 5321's 553 reply); the other recipients of the
message are accepted.

Duplicate delivery: the sink drops a recipient's copy when that Maildir already holds a
message with the same Message-ID, as a receiving Exchange server's mailbox store does
(DUPLICATEDELIVER, transport/mailbox.py). A hub that delivered here and was killed before it
recorded the delivery sends the message again after its restart (SMTP cannot tell the sender
whether a 250 it never read was sent); the second copy is recognised and dropped, with a
``250`` all the same, so "at most once towards the internet" holds across crashes. The key is
the same as Mailbox Transport Delivery's: a hash of (Message-ID as written, recipient address
lower-cased) in the Maildir file name (transport/maildir.py). Choices where the sources are
silent: a message without a Message-ID is always stored (an MTA on the internet has nothing
else to recognise it by); the NDRs of the hubs carry a Message-ID derived from the message
they report on, so an NDR sent again is recognised too (transport/delivery.py). A dropped copy is
logged at INFO as ``DUPLICATEDELIVER``.

The files of messages that arrive together are written as one batch on one worker thread,
sharing the fsync of each ``new/`` directory (transport/groupcommit.py).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from exchsim.policy.headers import parse_message
from exchsim.transport.groupcommit import GroupCommit
from exchsim.transport.maildir import MaildirStore, MessageFiles, mailbox_path, unique_token

log = logging.getLogger(__name__)



class SinkHandler:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.received = 0
        self.duplicates = 0  # recipient copies dropped as already stored
        self._store = MaildirStore(root)
        self._writer: GroupCommit[MessageFiles, list[str]] = GroupCommit(
            self._store.store_messages, name="internet-sink")

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        try:
            mailbox_path(self.root, address)
        except ValueError:
            return "553 5.1.3 Mailbox name not allowed"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        message_id = parse_message(data).first("Message-ID")
        if message_id:
            files = tuple((rcpt, data, unique_token(f"message-id:{message_id}", rcpt))
                          for rcpt in envelope.rcpt_tos)
        else:
            unique = uuid.uuid4().hex
            files = tuple((rcpt, data, unique) for rcpt in envelope.rcpt_tos)
        for rcpt in await self._writer.submit(files):
            self.duplicates += 1
            log.info("DUPLICATEDELIVER %s to %s: already in the sink, dropped", message_id, rcpt)
        self.received += 1
        return "250 2.6.0 Message accepted for delivery"

    async def close(self) -> None:
        await self._writer.close()


def sink_factory(handler: SinkHandler, hostname: str) -> Any:
    def factory() -> SMTP:
        return SMTP(handler, hostname=hostname, ident="lab internet sink ESMTP",
                    enable_SMTPUTF8=True, data_size_limit=64 * 1024 * 1024)

    return factory
