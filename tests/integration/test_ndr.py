"""NDRs as Exchange writes them and the header firewall on the way out, over real sockets
(exchange.md §12.5, §12.6)."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import re
import smtplib

from tests.integration.conftest import RunningLab, swaks

HOST = "127.0.10.1"
ORIGINAL = (
    "From: {sender}\r\n"
    "To: nobody@contoso.com\r\n"
    "Subject: quarterly figures\r\n"
    "Message-ID: <figures-1@example.test>\r\n"
    "\r\n"
    "the figures\r\n"
)
# S6-06's order (exchange.md §12.6).
HEADER_ORDER = ["MIME-Version", "From", "To", "Date", "Content-Type",
                "X-MS-Exchange-Message-Is-Ndr", "Content-Language", "Message-ID", "In-Reply-To",
                "References", "Subject", "Auto-Submitted"]


def _send(port: int, sender: str) -> dict[str, object]:
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
        client.ehlo()
        return client.sendmail(sender, ["nobody@contoso.com"],  # type: ignore[return-value]
                               ORIGINAL.format(sender=sender))


def _org_headers(msg: email.message.Message) -> list[str]:
    return [k for k in msg if k.lower().startswith(("x-ms-exchange-organization-",
                                                    "x-ms-exchange-forest-"))]


async def _ndr_for(lab: RunningLab, sender: str) -> email.message.Message:
    assert await asyncio.to_thread(_send, lab.port(25), sender) == {}
    folder = lab.mailbox if sender.endswith("@contoso.com") else lab.internet
    await lab.wait_for(lambda: len(folder(sender)) == 1)
    return email.message_from_bytes(folder(sender)[0], policy=email.policy.compat32)


def _check_structure(ndr: email.message.Message, sender: str) -> email.message.Message:
    """The structure every NDR has; returns the attached original."""
    names = list(ndr.keys())
    own = [n for n in names if n in HEADER_ORDER]
    assert own == HEADER_ORDER, names
    assert ndr["From"] == "<postmaster@contoso.com>"
    assert ndr["To"] == f"<{sender}>"
    assert ndr["Subject"] == "Undeliverable: quarterly figures"
    assert ndr["In-Reply-To"] == ndr["References"] == "<figures-1@example.test>"
    assert ndr["Auto-Submitted"] == "auto-replied"
    assert ndr["X-MS-Exchange-Message-Is-Ndr"] == ""
    assert ndr["Content-Language"] == "en-US"
    assert ndr["Message-ID"].endswith("@ex01.contoso.com>")
    assert ndr.get_content_type() == "multipart/report"
    assert ndr.get_param("report-type") == "delivery-status"
    human, status, original = ndr.get_payload()
    assert [human.get_content_type(), status.get_content_type(),
            original.get_content_type()] == ["multipart/alternative", "message/delivery-status",
                                             "message/rfc822"]
    assert [p.get_content_type() for p in human.get_payload()] == ["text/plain", "text/html"]
    text = human.get_payload()[0].get_payload(decode=True).decode()
    lines = text.splitlines()
    assert lines[0] == "Delivery has failed to these recipients or groups:"
    assert lines[2] == "nobody@contoso.com<mailto:nobody@contoso.com>"
    assert lines[3].startswith("The email address you entered couldn't be found.")
    at = lines.index("Diagnostic information for administrators:")
    assert lines[4:at] == [""] * 8
    assert lines[at + 2] == "Generating server: ex01.contoso.com"
    assert lines[at + 4:at + 6] == [
        "nobody@contoso.com",
        "Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'"]
    assert "Original message headers:" in lines
    assert "Subject: quarterly figures" in text.split("Original message headers:")[1]
    html = human.get_payload()[1].get_payload(decode=True).decode()
    assert "Delivery has failed to these recipients or groups:" in html
    # The delivery-status part: per-message fields, then the recipient's.
    per_message, per_recipient = status.get_payload()
    assert list(per_message.keys()) == ["Reporting-MTA", "Received-From-MTA", "Arrival-Date"]
    assert per_message["Reporting-MTA"] == "dns;ex01.contoso.com"
    assert per_message["Received-From-MTA"] == "dns;ex01.contoso.com"  # the Front End's EHLO
    assert per_message["Arrival-Date"].endswith("+0000")
    assert list(per_recipient.items()) == [
        ("Original-Recipient", "rfc822;nobody@contoso.com"),
        ("Final-Recipient", "rfc822;nobody@contoso.com"),
        ("Action", "failed"),
        ("Status", "5.1.1"),
        ("Diagnostic-Code", "smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found")]
    [attached] = original.get_payload()
    assert attached["Message-ID"] == "<figures-1@example.test>"
    assert attached.get_all("Return-Path") == [sender]  # the hub's (exchange.md §12.2)
    assert attached.get_payload() == "the figures\r\n"
    return attached


async def test_an_outside_sender_gets_an_ndr_in_exchanges_structure_without_org_headers(
        lab: RunningLab) -> None:
    ndr = await _ndr_for(lab, "someone@fabrikam.example")
    attached = _check_structure(ndr, "someone@fabrikam.example")
    assert _org_headers(attached) == []
    assert _org_headers(ndr) == []
    assert attached.get_all("Received")  # routing headers stay (exchange.md §12.5)
    text = ndr.get_payload()[0].get_payload()[0].get_payload(decode=True).decode()
    assert "X-MS-Exchange-Organization" not in text


async def test_an_internal_sender_gets_the_ndr_in_the_mailbox_with_the_original_whole(
        lab: RunningLab) -> None:
    ndr = await _ndr_for(lab, "alice@contoso.com")
    attached = _check_structure(ndr, "alice@contoso.com")
    # Inside the organization the original keeps its organization headers (exchange.md §12.6).
    assert attached["X-MS-Exchange-Organization-AuthAs"] == "Anonymous"
    assert attached["X-MS-Exchange-Organization-Network-Message-Id"]


async def test_relayed_mail_leaves_without_org_headers_and_alices_copy_keeps_them(
        lab: RunningLab) -> None:
    rc, out = await swaks(
        "--server", f"{HOST}:{lab.port(587)}", "--tls", "--auth", "LOGIN",
        "--auth-user", "alice@contoso.com", "--auth-password", "P@ssw0rd!",
        "--from", "alice@contoso.com", "--to", "user@fabrikam.example,alice@contoso.com",
        "--header", "Subject: to both")
    assert rc == 0, out
    await lab.wait_for(lambda: len(lab.internet("user@fabrikam.example")) == 1
                       and len(lab.mailbox("alice@contoso.com")) == 1)
    relayed = email.message_from_bytes(lab.internet("user@fabrikam.example")[0])
    kept = email.message_from_bytes(lab.mailbox("alice@contoso.com")[0])
    assert relayed["Subject"] == kept["Subject"] == "to both"
    assert _org_headers(relayed) == []
    assert relayed.get_all("Received")
    assert kept["X-MS-Exchange-Organization-AuthAs"] == "Internal"
    assert kept["X-MS-Exchange-Organization-Network-Message-Id"]


def _internal_id(port: int, sender: str, rcpts: list[str]) -> int:
    """Send one message; the InternalId the hub gave it (its 250 reply, exchange.md §12.6)."""
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
        client.ehlo()
        assert client.mail(sender)[0] == 250
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        code, text = client.data(b"Subject: from nobody\r\n\r\nbody\r\n")
        assert code == 250, text
        match = re.search(rb"InternalId=(\d+)", text)
        assert match is not None, text
        return int(match.group(1))


async def test_the_null_sender_gets_no_ndr(lab: RunningLab) -> None:
    first = await asyncio.to_thread(_internal_id, lab.port(25), "",
                                    ["nobody@contoso.com", "alice@contoso.com"])
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    queue = lab.daemon.queues["EX01"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await queue.pending_count():  # both recipients settled: alice's and the failed one
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    # No NDR was queued in between: the next message gets the next InternalId.
    second = await asyncio.to_thread(_internal_id, lab.port(25), "x@fabrikam.example",
                                     ["alice@contoso.com"])
    assert second == first + 1
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 2)
    assert not (lab.data / "internet").exists() or not any((lab.data / "internet").iterdir())
