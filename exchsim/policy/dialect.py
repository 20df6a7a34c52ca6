"""What differs between Exchange 2013 (15.0), 2016 (15.1) and 2019 / SE (15.2) on the wire.

Every version quirk the SMTP session and the reply catalogue know of is one field here, so a
version comparison never appears anywhere else. Each field names the section of
``docs/exchange.md`` that shows the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True, slots=True)
class Dialect:
    version: str  # "15.0" | "15.1" | "15.2"
    # 15.2 appends the verb: ``500 5.3.3 Unrecognized command 'FOO'`` (exchange.md §1.8).
    unrecognized_names_verb: bool
    # 15.0 refuses relay with ``550 5.7.1 Unable to relay``; later ones with 5.7.54
    # (exchange.md §2.3).
    relay_refusal_2013: bool
    # 15.0's end-of-data reply has no ``<bytes> bytes in <s>, <rate> KB/sec`` (exchange.md §2.5).
    queued_with_rate: bool
    # Only 2013 wrote ``Set Session Permissions`` at connect and after TLS (exchange.md §9.7).
    session_permissions_at_connect: bool
    # 2019's Mailbox Transport Delivery listener: an upper-case banner and one reply for
    # every sequence error, ``503 5.5.1 Bad sequence of commands`` (exchange.md §1.5).
    modern_mailbox_delivery: bool
    # SMTPUTF8 is on by default from 15.2 on (exchange.md §9.13).
    smtputf8_by_default: bool
    # 2013 writes ``with Microsoft SMTP Server (TLS)`` in Received lines, later ones
    # ``(version=TLS1_2, cipher=...)`` (exchange.md §12.1).
    received_tls_2013: bool = False

    @staticmethod
    def of(version: str) -> Dialect:
        return _dialect(version)


@cache
def _dialect(version: str) -> Dialect:
    return Dialect(
        version=version,
        unrecognized_names_verb=version == "15.2",
        relay_refusal_2013=version == "15.0",
        queued_with_rate=version != "15.0",
        session_permissions_at_connect=version == "15.0",
        modern_mailbox_delivery=version == "15.2",
        smtputf8_by_default=version == "15.2",
        received_tls_2013=version == "15.0",
    )
