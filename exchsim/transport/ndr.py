"""The hub's non-delivery reports: RFC 3464 with the original headers (exchange.md §8.1, §12.6)."""

from __future__ import annotations

import datetime
import email.utils
import uuid
from collections.abc import Mapping, Sequence

__all__ = ["build_ndr", "ndr_message_id"]

_NDR_NAMESPACE = uuid.UUID("5b0c6d4e-3f0a-4c53-9d2e-6e4dc1a7f3b1")  # ndr_message_id's


def ndr_message_id(original: str, recipients: Sequence[str], fqdn: str) -> str:
    """The Message-ID of the NDR for ``recipients`` of the message ``original`` names (its
    Network-Message-Id, or its InternalId if it has none): the same every time that NDR is
    made, so one made again (the hub was stopped after it queued the NDR and before it
    recorded the recipients as done) is recognised downstream as the same message
    (DUPLICATEDELIVER, transport/mailbox.py, smtp/sink.py). A UUID (version 5) of the
    original and the recipients."""
    key = "|".join([original, *sorted(r.lower() for r in recipients)])
    # Written as a random GUID is (version 4), the form of Exchange's generated Message-IDs,
    # ``<guid@server FQDN>`` (exchange.md §12.6).
    guid = uuid.UUID(bytes=uuid.uuid5(_NDR_NAMESPACE, key).bytes, version=4)
    return f"<{guid}@{fqdn}>"


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
