"""The lab's internet: an SMTP server that stores what it receives (exchange.md §8.2).

Relayed mail from the hubs ends here, one Maildir per recipient under
``DATA/internet/<address>/``, each file fsynced before the 250. It is a plain aiosmtpd
server on purpose: it plays "some MTA on the internet", not Exchange.

Like a real MTA it refuses, at RCPT, an address it has no mailbox name for: one with ``/`` or
NUL, ``.`` or ``..``, or too long for a directory name (:func:`maildir.mailbox_path`) gets
``553 5.1.3 Mailbox name not allowed`` (RFC 5321's 553 reply); the other recipients of the
message are accepted.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from exchsim.transport import maildir


class SinkHandler:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.received = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        try:
            maildir.mailbox_path(self.root, address)
        except ValueError:
            return "553 5.1.3 Mailbox name not allowed"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        unique = uuid.uuid4().hex
        for rcpt in envelope.rcpt_tos:
            await asyncio.to_thread(maildir.deliver, self.root, rcpt, data, unique=unique)
        self.received += 1
        return "250 2.6.0 Message accepted for delivery"


def sink_factory(handler: SinkHandler, hostname: str) -> Any:
    def factory() -> SMTP:
        return SMTP(handler, hostname=hostname, ident="lab internet sink ESMTP",
                    enable_SMTPUTF8=True, data_size_limit=64 * 1024 * 1024)

    return factory
