"""Delivery status notifications as Exchange writes them (exchange.md §8.1, §12.6).

An NDR (and a delay or success DSN, built the same way) is ``multipart/report;
report-type=delivery-status`` with three parts, in this order (exchange.md §12.6, S6-06):

1. ``multipart/alternative; differences=Content-Type``: the text for people, ``text/plain``
   and ``text/html``, in Exchange's layout: "Delivery has failed to these recipients or
   groups:", each recipient with the explanation for its reason, eight blank lines,
   "Diagnostic information for administrators:", "Generating server: <fqdn>", each recipient
   with ``Remote Server returned '<reply>'``, then "Original message headers:" and the header
   block of the original;
2. ``message/delivery-status`` (RFC 3464): ``Reporting-MTA: dns;<fqdn>``,
   ``Received-From-MTA: dns;<EHLO of the client that handed the message in>``, ``Arrival-Date``
   (UTC), then per recipient ``Original-Recipient``, ``Final-Recipient``, ``Action``,
   ``Status``, ``Diagnostic-Code: smtp;<reply>``;
3. the original as ``message/rfc822`` (``text/rfc822-headers`` for a DSN asked with RET=HDRS).

The header block is S6-06's, in its order: MIME-Version, From (the postmaster, no display
name), To, Date, Content-Type, X-MS-Exchange-Message-Is-Ndr (empty), Content-Language,
Message-ID, In-Reply-To and References (the original's Message-ID), Subject
(``Undeliverable: <original subject>``), Auto-Submitted: auto-replied. Boundaries are bare GUIDs.

What the samples show and what exchsim chose (exchange.md §12.6 has the list): the explanation
for an unknown recipient is S7's (2016 CU23), for an expired message S6-05's; the texts for a
size limit and for other failures and the HTML part's markup are exchsim's choice, in the same
style. Content-Language is en-US. Delay, success ("Delivered") and relay ("Relayed") reports
(:class:`DsnKind`) list their recipients without an explanation each, then the original's
subject and, for a delay, S19's two sentences with the time left until expiry
(:func:`time_left`); they carry no X-MS-Exchange-Message-Is-Ndr, and success and relay reports
no Diagnostic-Code. Who gets which is policy/dsn.py's, sending them transport/notify.py's.
"""

from __future__ import annotations

import datetime
import email.header
import email.utils
import html
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from exchsim.policy import dsn
from exchsim.policy.headers import parse_message
from exchsim.smtp.wire import xtext_decode

__all__ = ["DsnKind", "Envelope", "build_dsn", "build_ndr", "envelope_of", "explanation",
           "ndr_message_id", "time_left"]

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


class DsnKind(Enum):
    """What the report says: (opening line, Subject prefix, Action) (exchange.md §12.6)."""

    FAILED = ("Delivery has failed to these recipients or groups:", "Undeliverable: ", "failed")
    DELAYED = ("Delivery is delayed to these recipients or groups:", "Delivery delayed: ",
               "delayed")
    DELIVERED = ("Your message has been delivered to the following recipients:", "Delivered: ",
                 "delivered")
    RELAYED = ("Delivery to these recipients or groups is complete, but no delivery "
               "notification was sent by the destination server:", "Relayed: ", "relayed")


# The explanation per reason, by enhanced status code (exchange.md §12.6).
_NOT_FOUND = ("The email address you entered couldn't be found. Please check the recipient's "
              "email address and try to resend the message. If the problem continues, please "
              "contact your email admin.")  # S7, 2016 CU23
_EXPIRED = ("The server has tried to deliver this message, without success, and has stopped "
            "trying. Please try sending this message again. If the problem continues, contact "
            "your helpdesk.")  # S6-05, 2013 CU12
_TOO_LARGE = ("Your message is too big to be delivered to this recipient. Try sending a smaller "
              "message, or removing attachments, and try to resend the message. If the problem "
              "continues, please contact your email admin.")  # exchsim's choice
_OTHER = ("Your message couldn't be delivered to this recipient. Please try to resend the "
          "message. If the problem continues, please contact your email admin.")  # exchsim's
# A delay DSN's sentences, after the recipients and the original's subject (exchange.md §12.6).
_DELAYED = "This message hasn't been delivered yet. Delivery will continue to be attempted."
_KEEP_TRYING = ("The server will keep trying to deliver this message for the next {left}. "
                "You'll be notified if the message can't be delivered by that time.")


def time_left(remaining: datetime.timedelta) -> str:
    """``1 days, 19 hours and 57 minutes``, as the delay DSN writes the time until expiry."""
    minutes = max(int(remaining.total_seconds()) // 60, 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days} days, {hours} hours and {minutes} minutes"


def explanation(kind: DsnKind, status: str) -> str:
    """The sentence for people under each recipient of an NDR, for the reply's enhanced
    status code; other reports have none (they say it once, after the subject)."""
    if kind is not DsnKind.FAILED:
        return ""
    if status in ("5.1.1", "5.1.10"):
        return _NOT_FOUND
    if status.startswith(("4.4.", "5.4.7")):
        return _EXPIRED
    if status in ("5.2.3", "5.3.4"):
        return _TOO_LARGE
    return _OTHER


def _status(reply: str, kind: DsnKind) -> str:
    """The enhanced status code of a reply text (``550 5.1.1 ...`` -> ``5.1.1``)."""
    parts = reply.split(" ", 2)
    if len(parts) >= 2 and parts[1][:1].isdigit() and parts[1].count(".") == 2:
        return parts[1]
    return {DsnKind.FAILED: "5.0.0", DsnKind.DELAYED: "4.0.0"}.get(kind, "2.0.0")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the queue knows of the original: its arrival and the DSN parameters."""

    received_from: str | None = None  # the EHLO name of the client that handed it in
    arrival: datetime.datetime | None = None  # UTC
    envid: str | None = None  # MAIL FROM ENVID=
    headers_only: bool = False  # MAIL FROM RET=HDRS
    original_recipients: Mapping[str, str] | None = None  # RCPT TO ORCPT= (without "rfc822;";
    # another address type keeps its "type;")


def envelope_of(metadata: Mapping[str, str], arrival: datetime.datetime) -> Envelope:
    """The Envelope from what the hub keeps with a queued message (transport/delivery.py):
    ENVID and ORCPT as RFC 3461 xtext decodes them."""
    orcpt = {}
    for rcpt, request in dsn.decode(metadata).items():
        if request.orcpt:
            kind, _, address = request.orcpt.partition(";")
            address = xtext_decode(address)
            orcpt[rcpt] = address if kind.lower() == "rfc822" else f"{kind};{address}"
    envid = metadata.get("envid")
    return Envelope(received_from=metadata.get("received_from") or None, arrival=arrival,
                    envid=xtext_decode(envid) if envid else None,
                    headers_only=(metadata.get("ret") or "").upper() == "HDRS",
                    original_recipients=orcpt or None)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_dsn(
    kind: DsnKind,
    *,
    message_id: str,
    postmaster: str,
    sender: str,
    recipients: Sequence[str],
    reasons: Mapping[str, str],
    original: bytes,
    reporting_mta: str,
    now: datetime.datetime,
    envelope: Envelope = Envelope(),
    remaining: datetime.timedelta | None = None,
) -> bytes:
    """A delivery status notification in Exchange's structure (the module docstring);
    ``remaining``: a delay DSN's time until the message expires."""
    parsed = parse_message(original)
    header_block = b"".join(f.raw for f in parsed.fields)
    subject = _one_line(parsed.first("Subject") or "")
    original_id = _one_line(parsed.first("Message-ID") or "")
    opening, prefix, action = kind.value
    report = uuid.uuid4()
    alternative = uuid.uuid4()
    replies = {r: _one_line(reasons[r]) for r in recipients}
    statuses = {r: _status(replies[r], kind) for r in recipients}

    head = [
        "MIME-Version: 1.0",
        f"From: <{postmaster}>",
        f"To: <{sender}>",
        f"Date: {email.utils.format_datetime(now)}",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{report}"',
    ]
    if kind is DsnKind.FAILED:
        head.append("X-MS-Exchange-Message-Is-Ndr:")
    head += ["Content-Language: en-US", f"Message-ID: {message_id}"]
    if original_id:
        head += [f"In-Reply-To: {original_id}", f"References: {original_id}"]
    head += [f"Subject: {prefix}{subject}".rstrip(), "Auto-Submitted: auto-replied"]

    text = [opening, ""]
    after = _after_recipients(kind, subject, remaining)
    for r in recipients:
        text += [f"{r}<mailto:{r}>"]
        if kind is DsnKind.FAILED:
            text.append(explanation(kind, statuses[r]))
    for sentence in after:
        text += ["", sentence]
    text += [""] * 8 + ["Diagnostic information for administrators:", "",
                        f"Generating server: {reporting_mta}", ""]
    for r in recipients:
        text += [r, f"Remote Server returned '{replies[r]}'", ""]
    text += ["Original message headers:", ""]
    plain = "\r\n".join(text).encode("utf-8") + b"\r\n" + header_block

    e = html.escape
    markup = ["<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; "
              "charset=utf-8\"></head><body>", f"<p><b>{e(opening)}</b></p>"]
    for r in recipients:
        markup += [f'<p><a href="mailto:{e(r)}">{e(r)}</a><br>',
                   f"{e(explanation(kind, statuses[r]))}</p>"]
    markup += [f"<p>{e(sentence)}</p>" for sentence in after]
    markup += ["<p><b>Diagnostic information for administrators:</b></p>",
               f"<p>Generating server: {e(reporting_mta)}</p>"]
    for r in recipients:
        markup.append(f"<p>{e(r)}<br>Remote Server returned '{e(replies[r])}'</p>")
    markup += ["<p>Original message headers:</p>", "<pre>"]
    html_part = ("\r\n".join(markup).encode("utf-8") + b"\r\n"
                 + html.escape(header_block.decode("utf-8", "replace"), quote=False)
                 .encode("utf-8") + b"</pre>\r\n</body></html>\r\n")

    status = ["Reporting-MTA: dns;" + reporting_mta]
    if envelope.envid:
        status.insert(0, f"Original-Envelope-Id: {envelope.envid}")
    if envelope.received_from:
        status.append(f"Received-From-MTA: dns;{envelope.received_from}")
    if envelope.arrival is not None:
        status.append("Arrival-Date: " + email.utils.format_datetime(
            envelope.arrival.astimezone(datetime.UTC)).replace("-0000", "+0000"))
    status.append("")
    orcpt = envelope.original_recipients or {}
    for r in recipients:
        given = orcpt.get(r, r)
        status += ["Original-Recipient: " + (given if ";" in given else f"rfc822;{given}"),
                   f"Final-Recipient: rfc822;{r}",
                   f"Action: {action}",
                   f"Status: {statuses[r]}"]
        if kind in (DsnKind.FAILED, DsnKind.DELAYED):
            status.append(f"Diagnostic-Code: smtp;{replies[r]}")
        status.append("")

    if envelope.headers_only:
        attached = b"Content-Type: text/rfc822-headers\r\n\r\n" + header_block
    else:
        # The original whole; the hub's stamping gave it its Return-Path (exchange.md §12.2).
        attached = b"Content-Type: message/rfc822\r\n\r\n" + original
        if not original.endswith(b"\r\n"):
            attached += b"\r\n"

    crlf = b"\r\n"
    out_b = (crlf.join(line.encode("utf-8") for line in head) + crlf + crlf
             + f"--{report}\r\nContent-Type: multipart/alternative; "
               f"differences=Content-Type;".encode())
    parts = [
        out_b,
        f'\r\n\tboundary="{alternative}"\r\n\r\n'.encode(),
        f"--{alternative}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n".encode(),
        plain,
        f"\r\n--{alternative}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n".encode(),
        html_part,
        f"\r\n--{alternative}--\r\n\r\n--{report}\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n".encode(),
        crlf.join(line.encode("utf-8") for line in status),
        f"\r\n--{report}\r\n".encode(),
        attached,
        f"\r\n--{report}--\r\n".encode(),
    ]
    return b"".join(parts)


def _after_recipients(kind: DsnKind, subject: str,
                      remaining: datetime.timedelta | None) -> list[str]:
    """What a report other than an NDR says after its recipients: the original's subject and,
    for a delay, that delivery goes on and until when (exchange.md §12.6)."""
    if kind is DsnKind.FAILED:
        return []
    try:
        readable = str(email.header.make_header(email.header.decode_header(subject)))
    except (ValueError, LookupError):  # a malformed encoded word: as it came
        readable = subject
    out = [f"Subject: {_one_line(readable)}"]
    if kind is DsnKind.DELAYED:
        out.append(_DELAYED)
        if remaining is not None:
            out.append(_KEEP_TRYING.format(left=time_left(remaining)))
    return out


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
    envelope: Envelope = Envelope(),
) -> bytes:
    """A non-delivery report (``Undeliverable: <subject>``) for ``recipients``."""
    return build_dsn(DsnKind.FAILED, message_id=message_id, postmaster=postmaster,
                     sender=sender, recipients=recipients, reasons=reasons, original=original,
                     reporting_mta=reporting_mta, now=now, envelope=envelope)
