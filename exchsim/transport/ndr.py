"""The hub's non-delivery reports: RFC 3464 with the original headers (exchange.md §8.1, §12.6)."""

from __future__ import annotations

import datetime
import email.utils
import uuid
from collections.abc import Mapping, Sequence

__all__ = ["build_ndr"]


def build_ndr(
    *,
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
        f"Message-ID: <{uuid.uuid4()}@{reporting_mta}>",
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
