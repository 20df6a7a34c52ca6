"""Seed 001 end to end over real sockets (exchange.md §4.2, §4.3): alice submits on EX01's 587 to
user@partner.example; the To Partner connector (DNS-routed, DomainSecureEnabled) with
partner.example in TLSSendDomainSecureList takes it to PARTNER01 over mutual TLS, the partner
judges EX01's certificate and accepts the message as Domain Secured. A partner certificate that
is revoked or does not name partner.example keeps the message queued with the reason, and
nothing goes in clear."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from exchsim.policy.headers import parse_message
from exchsim.tls.certstore import enable
from exchsim.tls.issued import issue_certificate, revoke
from exchsim.tls.labca import load_lab_ca
from exchsim.transport.queue import QueuedMessage
from tests.integration.conftest import CONFIGS, RunningLab
from tests.integration.sendlab import submit
from tests.integration.test_partner import CLASSIFICATION, lab_certificate, start_seed001
from tests.integration.test_tracking import read_events

PARTNER_MAILBOX = "user@partner.example"


@pytest.fixture
async def seed001(tmp_path: Path) -> AsyncIterator[RunningLab]:
    lab = await start_seed001(tmp_path / "data")
    try:
        yield lab
    finally:
        await lab.daemon.stop()


def partner_log(lab: RunningLab) -> str:
    folder = lab.data / "logs" / "PARTNER01" / "ProtocolLog" / "SmtpReceive"
    return "".join(p.read_text("utf-8") for p in sorted(folder.iterdir()))


async def queued(lab: RunningLab, wanted: str, timeout: float = 15.0) -> QueuedMessage:
    """The message EX01 keeps queued with ``wanted`` in its last error (waits for it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: list[str | None] = []
    while asyncio.get_running_loop().time() < deadline:
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        found = await lab.daemon.queues["EX01"].due(later, limit=100)
        seen = [m.last_error for m in found]
        for message in found:
            if message.last_error and wanted in message.last_error:
                return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message queued with {wanted!r}; last errors: {seen}")


async def test_alice_to_the_partner_is_domain_secured_over_mutual_tls(
        seed001: RunningLab) -> None:
    lab = seed001
    await submit(lab.port(587), PARTNER_MAILBOX, "seed 001")
    await lab.wait_for(lambda: len(lab.mailbox(PARTNER_MAILBOX)) == 1, timeout=20)
    headers = parse_message(lab.mailbox(PARTNER_MAILBOX)[0])
    # The partner saw EX01's certificate and took the session as the Partner contoso.com.
    assert headers.values("X-MS-Exchange-Organization-AuthAs") == ["Partner"]
    assert headers.values("X-MS-Exchange-Organization-AuthMechanism") == ["02"]
    assert headers.values("X-MS-Exchange-Organization-AuthDomain") == ["contoso.com"]
    assert headers.values("X-MS-Exchange-Organization-Classification") == [CLASSIFICATION]
    ex01 = lab_certificate(lab, "EX01", "contoso.com")
    log = partner_log(lab)
    assert f"CN=mail.contoso.com CN=exchsim Lab Issuing CA, O=exchsim lab {ex01.serial}" in log
    assert "Client certificate chain validation status: 'Valid'" in log
    assert "EHLO mail.contoso.com" in log  # the connector's Fqdn
    # EX01's tracking log: RECEIVE, then SEND to the partner through To Partner.
    events = [e for e in read_events(lab.data) if PARTNER_MAILBOX in e["recipient-address"]]
    kinds = [e["event-id"] for e in events]
    assert "RECEIVE" in kinds and "SEND" in kinds, kinds
    assert kinds.index("RECEIVE") < kinds.index("SEND")
    send = next(e for e in events if e["event-id"] == "SEND")
    assert send["connector-id"] == "To Partner"
    assert (send["server-hostname"], send["server-ip"]) == ("mail.partner.example",
                                                           "127.0.10.60")
    assert send["recipient-status"] == "250 2.1.5 Recipient OK"  # the partner's RCPT reply
    assert await lab.daemon.queues["EX01"].pending_count() == 0


async def test_a_revoked_partner_certificate_keeps_the_message_queued(
        seed001: RunningLab) -> None:
    lab = seed001
    await submit(lab.port(587), PARTNER_MAILBOX, "before")
    await lab.wait_for(lambda: len(lab.mailbox(PARTNER_MAILBOX)) == 1, timeout=20)
    await asyncio.to_thread(revoke, load_lab_ca(lab.data / "pki"), lab.daemon.clock.utc(),
                            name="mail.partner.example")
    await submit(lab.port(587), PARTNER_MAILBOX, "after the revocation")
    message = await queued(lab, "Certificate validation failure")
    assert message.last_error is not None
    assert ("454 4.7.5 Certificate validation failure; partner.example is domain secure; the "
            "remote server's certificate status Revoked") in message.last_error
    assert "451 4.4.0 Primary target IP address responded with" in message.last_error
    # `exchsim queue get` on the running lab (Get-Queue): partner.example's queue is in Retry.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exchsim.cli", "queue", "--config", str(CONFIGS / "single-server.yaml"),
        "--data", str(lab.data), "--format", "json", "get",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    (hop,) = [q for q in json.loads(out) if q["NextHopDomain"] == "partner.example"]
    assert (hop["DeliveryType"], hop["NextHopConnector"], hop["Status"], hop["MessageCount"]) == (
        "DnsConnectorDelivery", "To Partner", "Retry", 1)
    assert "Certificate validation failure" in hop["LastError"]
    # The tracking log's DEFER and the connector's SmtpSend log give the same reason.
    defer = [e for e in read_events(lab.data) if e["event-id"] == "DEFER"
             and PARTNER_MAILBOX in e["recipient-address"]]
    assert defer and "Certificate validation failure" in defer[-1]["recipient-status"], defer
    send_log = "".join(p.read_text("utf-8") for p in sorted(
        (lab.data / "logs" / "EX01" / "ProtocolLog" / "SmtpSend").iterdir()))
    assert ("partner.example is domain secure; the remote server's certificate status Revoked"
            in send_log)
    await asyncio.sleep(1.5)  # at least one more retry: still queued, never sent in clear
    assert len(lab.mailbox(PARTNER_MAILBOX)) == 1
    assert partner_log(lab).count("MAIL FROM:<alice@contoso.com>") == 1
    assert len(await lab.daemon.queues["EX01"].due(
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1), limit=10)) == 1


async def test_a_partner_certificate_not_naming_the_domain_keeps_the_message_queued(
        seed001: RunningLab) -> None:
    lab = seed001
    pki = lab.data / "pki"
    partner = next(d for d in lab.daemon.partners if "PARTNER01" in d.nodes).nodes["PARTNER01"]
    # The partner's admin enables a newer certificate for the host name only (the newest
    # NotBefore is the one STARTTLS selects, exchange.md §4.5).
    now = lab.daemon.clock.utc()
    host_only = await asyncio.to_thread(
        issue_certificate, load_lab_ca(pki), "mail.partner.example", now,
        not_before=now - datetime.timedelta(minutes=10))
    await asyncio.to_thread(enable, pki, "PARTNER01", host_only.files.thumbprint,
                            frozenset({"SMTP"}), partner.certificate)
    await lab.wait_for(lambda: host_only.files.thumbprint in {
        c.thumbprint for c in partner.smtp_certificates})
    await submit(lab.port(587), PARTNER_MAILBOX, "host name only")
    message = await queued(lab, "SubjectMismatch")
    assert ("454 4.7.5 Certificate validation failure; partner.example is domain secure; the "
            "remote server's certificate status SubjectMismatch") in (message.last_error or "")
    await asyncio.sleep(1.5)
    assert lab.mailbox(PARTNER_MAILBOX) == []
    assert "MAIL FROM:<alice@contoso.com>" not in partner_log(lab)


async def test_the_partner_to_alice_is_domain_secured_the_other_way(seed001: RunningLab) -> None:
    """The partner's user submits on PARTNER01's 587; its To Contoso connector (Domain Security
    for contoso.com) takes the message to EX01's 25, which answers as mail.contoso.com with
    EX01's lab certificate and requires partner.example's certificate (exchange.md §4.2)."""
    lab = seed001
    message = EmailMessage()
    message["From"] = PARTNER_MAILBOX
    message["To"] = "alice@contoso.com"
    message["Subject"] = "seed 001, the other way"
    message.set_content("hello\n")
    await aiosmtplib.send(message, hostname="127.0.10.60", port=lab.port(587), start_tls=True,
                          validate_certs=False, username=PARTNER_MAILBOX,
                          password="P@ssw0rd!", timeout=30)
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1, timeout=20)
    headers = parse_message(lab.mailbox("alice@contoso.com")[0])
    assert headers.values("X-MS-Exchange-Organization-AuthAs") == ["Partner"]
    assert headers.values("X-MS-Exchange-Organization-AuthDomain") == ["partner.example"]
    assert headers.values("X-MS-Exchange-Organization-Classification") == [CLASSIFICATION]
    assert "Client certificate chain validation status: 'Valid'" in lab.protocol_log()
    send = next(e for e in read_events(lab.data, "PARTNER01") if e["event-id"] == "SEND")
    assert (send["connector-id"], send["server-hostname"]) == ("To Contoso", "mail.contoso.com")
