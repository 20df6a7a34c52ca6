"""The NDR and DSN builders (transport/ndr.py, exchange.md §12.6)."""

from __future__ import annotations

import datetime
import email
import email.message
import email.policy

import pytest

from exchsim.transport.ndr import (
    DsnKind,
    Envelope,
    build_dsn,
    build_ndr,
    explanation,
    time_left,
)

NOW = datetime.datetime(2026, 11, 29, 8, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
ARRIVAL = datetime.datetime(2026, 11, 29, 6, 55, 1, tzinfo=datetime.UTC)
ORIGINAL = (b"Received: from client.example by ex01.contoso.com\r\n"
            b"X-MS-Exchange-Organization-AuthAs: Internal\r\n"
            b"From: alice@contoso.com\r\nSubject: =?utf-8?q?caf=C3=A9?= plans\r\n"
            b"Message-ID: <plans@contoso.com>\r\n\r\nbody\r\n")


def _parse(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def _build(kind: DsnKind, reasons: dict[str, str], envelope: Envelope | None = None) -> bytes:
    return build_dsn(kind, message_id="<x@ex01.contoso.com>", postmaster="postmaster@contoso.com",
                     sender="alice@contoso.com", recipients=list(reasons), reasons=reasons,
                     original=ORIGINAL, reporting_mta="ex01.contoso.com", now=NOW,
                     envelope=envelope or Envelope(),
                     remaining=datetime.timedelta(days=1, hours=19, minutes=57, seconds=12))


def test_an_ndr_for_two_reasons_explains_each_and_keeps_the_encoded_subject() -> None:
    data = build_ndr(message_id="<x@ex01.contoso.com>", postmaster="postmaster@contoso.com",
                     sender="alice@contoso.com", recipients=["big@fabrikam.example",
                                                             "late@fabrikam.example"],
                     reasons={"big@fabrikam.example": "550 5.2.3 RESOLVER.RST.RecipSizeLimit; "
                              "message too large for this recipient",
                              "late@fabrikam.example": "550 4.4.7 QUEUE.Expired; message expired"},
                     original=ORIGINAL, reporting_mta="ex01.contoso.com", now=NOW,
                     envelope=Envelope(received_from="mx.contoso.com", arrival=ARRIVAL))
    assert data.count(b"\r\n") == data.count(b"\n")  # CRLF only
    ndr = _parse(data)
    assert ndr["Subject"] == "Undeliverable: =?utf-8?q?caf=C3=A9?= plans"
    assert ndr["Date"] == "Sun, 29 Nov 2026 08:00:00 +0100"
    human, status, original = ndr.get_payload()
    text = human.get_payload()[0].get_payload(decode=True).decode()
    assert explanation(DsnKind.FAILED, "5.2.3") in text
    assert explanation(DsnKind.FAILED, "4.4.7") in text
    assert explanation(DsnKind.FAILED, "4.4.7").startswith("The server has tried to deliver")
    per_message, big, late = status.get_payload()
    assert per_message["Received-From-MTA"] == "dns;mx.contoso.com"
    assert per_message["Arrival-Date"] == "Sun, 29 Nov 2026 06:55:01 +0000"
    assert big["Status"] == "5.2.3" and late["Status"] == "4.4.7"
    assert late["Action"] == "failed"
    assert original.get_content_type() == "message/rfc822"
    assert original.get_payload()[0]["X-MS-Exchange-Organization-AuthAs"] == "Internal"


@pytest.mark.parametrize(("status", "start"), [
    ("5.1.1", "The email address you entered couldn't be found."),
    ("5.1.10", "The email address you entered couldn't be found."),
    ("4.4.7", "The server has tried to deliver this message"),
    ("5.2.3", "Your message is too big"),
    ("5.1.3", "Your message couldn't be delivered"),
    ("5.2.2", "Your message couldn't be delivered"),
])
def test_each_reason_has_its_explanation(status: str, start: str) -> None:
    assert explanation(DsnKind.FAILED, status).startswith(start)


def test_a_delay_dsn_says_delayed_and_is_not_an_ndr() -> None:
    dsn = _parse(_build(DsnKind.DELAYED, {"bob@fabrikam.example":
                                          "451 4.4.0 Primary target IP address responded"}))
    assert dsn["Subject"] == "Delivery delayed: =?utf-8?q?caf=C3=A9?= plans"
    assert "X-MS-Exchange-Message-Is-Ndr" not in dsn
    human, status, _ = dsn.get_payload()
    text = human.get_payload()[0].get_payload(decode=True).decode()
    assert text.startswith("Delivery is delayed to these recipients or groups:\r\n\r\n"
                           "bob@fabrikam.example<mailto:bob@fabrikam.example>\r\n\r\n"
                           "Subject: caf\u00e9 plans\r\n\r\n"
                           "This message hasn't been delivered yet. Delivery will continue to be "
                           "attempted.\r\n\r\nThe server will keep trying to deliver this message "
                           "for the next 1 days, 19 hours and 57 minutes. You'll be notified if "
                           "the message can't be delivered by that time.\r\n")
    recipient = status.get_payload()[1]
    assert recipient["Action"] == "delayed" and recipient["Status"] == "4.4.0"
    assert recipient["Diagnostic-Code"] == "smtp;451 4.4.0 Primary target IP address responded"


def test_time_left_is_written_as_the_delay_dsn_writes_it() -> None:
    assert time_left(datetime.timedelta(days=1, hours=19, minutes=57, seconds=40)) == \
        "1 days, 19 hours and 57 minutes"
    assert time_left(datetime.timedelta(seconds=3)) == "0 days, 0 hours and 0 minutes"
    assert time_left(datetime.timedelta(seconds=-3)) == "0 days, 0 hours and 0 minutes"


def test_a_relay_dsn_says_relayed_without_a_diagnostic_code() -> None:
    dsn = _parse(_build(DsnKind.RELAYED, {"bob@fabrikam.example": "250 2.1.5 Recipient OK"}))
    assert dsn["Subject"] == "Relayed: =?utf-8?q?caf=C3=A9?= plans"
    human, status, _ = dsn.get_payload()
    text = human.get_payload()[0].get_payload(decode=True).decode()
    assert text.startswith("Delivery to these recipients or groups is complete, but no delivery "
                           "notification was sent by the destination server:\r\n")
    assert list(status.get_payload()[1].items())[2:] == [("Action", "relayed"),
                                                         ("Status", "2.1.5")]


def test_a_success_dsn_with_ret_hdrs_envid_and_orcpt() -> None:
    envelope = Envelope(envid="QQ314159", headers_only=True,
                        original_recipients={"bob@fabrikam.example": "Bob@Fabrikam.example"})
    dsn = _parse(_build(DsnKind.DELIVERED, {"bob@fabrikam.example": "250 2.6.0 Queued"},
                        envelope))
    assert dsn["Subject"] == "Delivered: =?utf-8?q?caf=C3=A9?= plans"
    human, status, headers = dsn.get_payload()
    text = human.get_payload()[0].get_payload(decode=True).decode()
    assert text.startswith("Your message has been delivered to the following recipients:\r\n")
    per_message, recipient = status.get_payload()
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert list(recipient.items()) == [
        ("Original-Recipient", "rfc822;Bob@Fabrikam.example"),
        ("Final-Recipient", "rfc822;bob@fabrikam.example"),
        ("Action", "delivered"), ("Status", "2.6.0")]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert b"body" not in headers.as_bytes()


def test_the_html_part_escapes_what_it_quotes() -> None:
    data = _build(DsnKind.FAILED, {"a<b>@fabrikam.example": "550 5.1.3 Invalid <address>"})
    html = _parse(data).get_payload()[0].get_payload()[1].get_payload(decode=True).decode()
    assert "Invalid &lt;address&gt;" in html and "<address>" not in html
