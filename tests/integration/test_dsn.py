"""Delivery status notifications on a running lab, asked for over real sockets with smtplib
(RFC 3461 NOTIFY, ORCPT, RET, ENVID on 25 and 587; exchange.md §8.4, §12.6): success and relay
DSNs, the delay DSN then the expiry NDR, and nothing where nothing was asked for."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchsim.config.load import load_config_text
from exchsim.daemon import LabDaemon
from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RunningLab,
    port_offset,
    with_connectors,
)
from tests.integration.test_tracking import read_events

HOST = "127.0.10.1"
BODY = ("From: {sender}\r\nTo: someone\r\nSubject: plans\r\n"
        "Message-ID: <{tag}@example.test>\r\n\r\nthe plans\r\n")


def _submit(port: int, sender: str, rcpts: dict[str, list[str]], *, tag: str,
            mail_options: tuple[str, ...] = (), login: bool = False,
            content: str | None = None) -> None:
    """One message over SMTP; on 587 after STARTTLS and AUTH LOGIN as alice."""
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
        client.ehlo()
        if login:
            client.starttls(context=ssl._create_unverified_context())
            client.ehlo()
            client.login("alice@contoso.com", "P@ssw0rd!")
        assert "dsn" in client.esmtp_features
        assert client.mail(sender, list(mail_options))[0] == 250
        for rcpt, options in rcpts.items():
            code, text = client.rcpt(rcpt, options)
            assert code == 250, text
        code, text = client.data((content or BODY.format(sender=sender, tag=tag)).encode())
        assert code == 250, text


def _parse(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def _report(msg: email.message.Message) -> tuple[str, email.message.Message,
                                                 list[email.message.Message],
                                                 email.message.Message]:
    """(plain text, per-message fields, per-recipient fields, the attached part)."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    human, status, attached = msg.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    text = human.get_payload()[0].get_payload(decode=True).decode()
    per_message, *per_recipient = status.get_payload()
    return text, per_message, per_recipient, attached


def _org_headers(msg: email.message.Message) -> list[str]:
    return [k for k in msg if k.lower().startswith("x-ms-exchange-organization-")]


async def test_success_to_a_mailbox_on_587_is_a_delivered_dsn_with_orcpt_envid_ret_hdrs(
        lab: RunningLab) -> None:
    await asyncio.to_thread(
        _submit, lab.port(587), "alice@contoso.com",
        {"bob@contoso.com": ["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob+2Bplans@Contoso.com"]},
        tag="success", mail_options=("RET=HDRS", "ENVID=QQ+2D314159"), login=True)
    await lab.wait_for(lambda: len(lab.mailbox("bob@contoso.com")) == 1
                       and len(lab.mailbox("alice@contoso.com")) == 1)
    # The Front End passed the recipient's parameters on to the hub (XPROXY hop to 465).
    assert ("RCPT TO:<bob@contoso.com> NOTIFY=SUCCESS ORCPT=rfc822;Bob+2Bplans@Contoso.com"
            in lab.protocol_log())
    dsn = _parse(lab.mailbox("alice@contoso.com")[0])
    assert dsn["Subject"] == "Delivered: plans"
    assert dsn["From"] == "<postmaster@contoso.com>" and dsn["To"] == "<alice@contoso.com>"
    assert "X-MS-Exchange-Message-Is-Ndr" not in dsn
    assert dsn["In-Reply-To"] == "<success@example.test>"
    text, per_message, [recipient], attached = _report(dsn)
    assert text.startswith("Your message has been delivered to the following recipients:\r\n\r\n"
                           "bob@contoso.com<mailto:bob@contoso.com>\r\n\r\nSubject: plans\r\n")
    assert per_message["Original-Envelope-Id"] == "QQ-314159"  # xtext decoded
    assert list(recipient.items()) == [
        ("Original-Recipient", "rfc822;Bob+plans@Contoso.com"),
        ("Final-Recipient", "rfc822;bob@contoso.com"),
        ("Action", "delivered"), ("Status", "2.1.5")]
    assert attached.get_content_type() == "text/rfc822-headers"  # RET=HDRS
    assert "Message-ID: <success@example.test>" in attached.get_payload()
    assert "the plans" not in attached.get_payload()
    # Tracking: the DSN event names the recipient it reports on and the original.
    await lab.wait_for(lambda: any(e["event-id"] == "DSN" for e in read_events(lab.data)))
    [event] = [e for e in read_events(lab.data) if e["event-id"] == "DSN"]
    assert (event["source"], event["recipient-address"], event["related-recipient-address"],
            event["reference"], event["message-subject"]) == (
        "DSN", "alice@contoso.com", "bob@contoso.com", "<success@example.test>",
        "Delivered: plans")


async def test_success_to_the_internet_is_a_relay_dsn(lab: RunningLab) -> None:
    await asyncio.to_thread(
        _submit, lab.port(587), "alice@contoso.com",
        {"user@fabrikam.example": ["NOTIFY=SUCCESS,FAILURE"],
         "bob@contoso.com": ["NOTIFY=FAILURE"]},  # delivered, no success asked: no DSN
        tag="relay", login=True)
    await lab.wait_for(lambda: len(lab.internet("user@fabrikam.example")) == 1
                       and len(lab.mailbox("alice@contoso.com")) == 1)
    dsn = _parse(lab.mailbox("alice@contoso.com")[0])
    assert dsn["Subject"] == "Relayed: plans"
    text, _, [recipient], attached = _report(dsn)
    assert text.startswith("Delivery to these recipients or groups is complete, but no "
                           "delivery notification was sent by the destination server:\r\n")
    assert recipient["Final-Recipient"] == "rfc822;user@fabrikam.example"
    assert recipient["Action"] == "relayed" and "Diagnostic-Code" not in recipient
    assert attached.get_content_type() == "message/rfc822"  # RET absent: the whole original
    await asyncio.sleep(0.5)
    assert len(lab.mailbox("alice@contoso.com")) == 1


async def test_an_unknown_recipient_on_25_gets_the_ndr_with_envid_orcpt_and_headers_only(
        lab: RunningLab) -> None:
    sender = "someone@fabrikam.example"
    await asyncio.to_thread(
        _submit, lab.port(25), sender,
        {"nobody@contoso.com": ["ORCPT=rfc822;nobody+2Bold@contoso.com"]},
        tag="unknown", mail_options=("RET=HDRS", "ENVID=ENV1"))
    assert ("RCPT TO:<nobody@contoso.com> ORCPT=rfc822;nobody+2Bold@contoso.com"
            in lab.protocol_log())  # the XPROXYFROM hop to 2525 carried it
    await lab.wait_for(lambda: len(lab.internet(sender)) == 1)
    ndr = _parse(lab.internet(sender)[0])
    assert ndr["Subject"] == "Undeliverable: plans"
    text, per_message, [recipient], attached = _report(ndr)
    assert text.startswith("Delivery has failed to these recipients or groups:")
    assert per_message["Original-Envelope-Id"] == "ENV1"
    assert recipient["Original-Recipient"] == "rfc822;nobody+old@contoso.com"
    assert recipient["Diagnostic-Code"] == "smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"
    assert attached.get_content_type() == "text/rfc822-headers"
    headers = _parse(attached.get_payload().encode())
    assert headers["Message-ID"] == "<unknown@example.test>"
    assert _org_headers(headers) == []  # it left the organization (exchange.md §12.5)


async def test_never_the_null_sender_and_a_report_get_no_notification(lab: RunningLab) -> None:
    outside = "someone@fabrikam.example"
    # NOTIFY=NEVER to an unknown recipient, and SUCCESS from the null sender: nothing back.
    await asyncio.to_thread(_submit, lab.port(25), outside,
                            {"nobody@contoso.com": ["NOTIFY=NEVER"]}, tag="never")
    await asyncio.to_thread(_submit, lab.port(25), "",
                            {"alice@contoso.com": ["NOTIFY=SUCCESS"]}, tag="null")
    # A delivery status notification with a sender is not answered either.
    report = ("From: mailer@fabrikam.example\r\nSubject: Undeliverable: x\r\n"
              "Message-ID: <report@example.test>\r\nMIME-Version: 1.0\r\n"
              "Content-Type: multipart/report; report-type=delivery-status;\r\n"
              "\tboundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--b--\r\n")
    await asyncio.to_thread(_submit, lab.port(25), outside, {"nobody@contoso.com": []},
                            tag="report", content=report)
    # The control: the default (no NOTIFY) gets its NDR, after the others were settled.
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    queue = lab.daemon.queues["EX01"]
    await lab.wait_for(lambda: not queue.leased())
    await asyncio.to_thread(_submit, lab.port(25), outside, {"nobody@contoso.com": []},
                            tag="control")
    await lab.wait_for(lambda: len(lab.internet(outside)) == 1)
    await asyncio.sleep(0.5)
    [ndr] = [_parse(m) for m in lab.internet(outside)]
    assert ndr["In-Reply-To"] == "<control@example.test>"
    assert len(lab.mailbox("alice@contoso.com")) == 1
    events = read_events(lab.data)
    assert sum(e["event-id"] == "FAIL" for e in events) == 3
    assert [e["reference"] for e in events if e["event-id"] == "DSN"] == [
        "<control@example.test>"]


# -- delay, then expiry -----------------------------------------------------------------------

SLOW_EX01 = FAST_LAB_YAML.replace(
    'Address: 127.0.10.1, Version: "15.2"}',
    'Address: 127.0.10.1, Version: "15.2", DelayNotificationTimeout: "00:00:02", '
    'MessageExpirationTimeout: "00:00:06"}')


@pytest.fixture
async def no_internet(tmp_path: Path) -> AsyncIterator[RunningLab]:
    """The lab with timeouts of seconds and its internet down (no sink listening)."""
    assert SLOW_EX01 != FAST_LAB_YAML
    lab = load_config_text(with_connectors(SLOW_EX01, FAST), "dsn.yaml")
    for _ in range(20):
        offset = port_offset()
        daemon = LabDaemon(lab, tmp_path / "data", port_offset=offset, run_sink=False)
        try:
            await daemon.start()
        except OSError:
            continue
        break
    else:
        raise RuntimeError("no free port offset found")
    yield RunningLab(lab, daemon, tmp_path / "data", offset)
    await daemon.stop()


async def test_a_message_that_cannot_go_gets_one_delay_dsn_then_the_expiry_ndr(
        no_internet: RunningLab) -> None:
    lab = no_internet
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.to_thread(
        _submit, lab.port(587), "alice@contoso.com",
        {"a@fabrikam.example": ["NOTIFY=DELAY,FAILURE"],
         "b@fabrikam.example": ["NOTIFY=FAILURE"],  # no delay DSN asked for
         "c@fabrikam.example": [],  # Exchange's default: failure and delay
         "d@fabrikam.example": ["NOTIFY=NEVER"]},
        tag="stuck", login=True)
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) >= 1, timeout=15)
    assert loop.time() - started >= 2  # not before DelayNotificationTimeout
    delay = _parse(lab.mailbox("alice@contoso.com")[0])
    assert delay["Subject"] == "Delivery delayed: plans"
    assert "X-MS-Exchange-Message-Is-Ndr" not in delay
    text, _, recipients, attached = _report(delay)
    assert [r["Final-Recipient"] for r in recipients] == [
        "rfc822;a@fabrikam.example", "rfc822;c@fabrikam.example"]
    assert {(r["Action"], r["Status"], r["Diagnostic-Code"]) for r in recipients} == {
        ("delayed", "4.4.7", "smtp;400 4.4.7 Message delayed")}
    assert "This message hasn't been delivered yet. Delivery will continue to be attempted." \
        in text
    assert ("The server will keep trying to deliver this message for the next 0 days, 0 hours "
            "and 0 minutes. You'll be notified if the message can't be delivered by that time."
            in text)
    assert "Remote Server returned '400 4.4.7 Message delayed'" in text
    assert attached.get_content_type() == "message/rfc822"
    # Then the expiry NDR, once, for everyone who did not say NEVER.
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) >= 2, timeout=15)
    assert loop.time() - started >= 6
    ndr = _parse(lab.mailbox("alice@contoso.com")[1])
    assert ndr["Subject"] == "Undeliverable: plans"
    assert ndr["X-MS-Exchange-Message-Is-Ndr"] == ""
    text, _, recipients, _ = _report(ndr)
    assert [r["Final-Recipient"] for r in recipients] == [
        "rfc822;a@fabrikam.example", "rfc822;b@fabrikam.example", "rfc822;c@fabrikam.example"]
    assert {(r["Action"], r["Status"], r["Diagnostic-Code"]) for r in recipients} == {
        ("failed", "4.4.7", "smtp;550 4.4.7 QUEUE.Expired; message expired")}
    assert "The server has tried to deliver this message, without success, and has stopped " \
        "trying." in text
    # The expiry NDR is queued before the original's recipients are settled: it can arrive
    # first, so the queue is watched until it is empty.
    queue = lab.daemon.queues["EX01"]
    for _ in range(100):
        if await queue.pending_count() == 0:
            break
        await asyncio.sleep(0.05)
    assert await queue.pending_count() == 0
    await asyncio.sleep(1.5)  # retries every second: nothing more comes
    assert len(lab.mailbox("alice@contoso.com")) == 2
    events = read_events(lab.data)
    dsns = [e for e in events if e["event-id"] == "DSN"]
    assert [(e["related-recipient-address"], e["message-subject"]) for e in dsns] == [
        ("a@fabrikam.example;c@fabrikam.example", "Delivery delayed: plans"),
        ("a@fabrikam.example;b@fabrikam.example;c@fabrikam.example", "Undeliverable: plans")]
    assert {e["reference"] for e in dsns} == {"<stuck@example.test>"}
    [fail] = [e for e in events if e["event-id"] == "FAIL"]
    assert fail["recipient-status"].split(";")[0] == "550 4.4.7 QUEUE.Expired"
