"""Mail through the whole chain, FE -> hub -> mailbox delivery, every hop real SMTP."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import mailbox
import random
import re
import smtplib
import ssl
from pathlib import Path

import aiosmtplib
import pytest

from exchsim.tls.contexts import client_context_anonymous_tls
from exchsim.tls.pki import ensure_server_certificate, load_certificate_files
from exchsim.transport import delivery
from exchsim.transport.hopclient import HopClient
from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RawClient,
    RunningLab,
    start_lab,
    swaks,
    with_connectors,
)

HOST = "127.0.10.1"
QUEUED = re.compile(
    r"^250 2\.6\.0 <[^>]+> \[InternalId=\d+, Hostname=ex01\.contoso\.com\] \d+ bytes in "
    r"\d+\.\d{3}, \d+\.\d{3} KB/sec Queued mail for delivery$"
)

FORGED = (
    "Received: from outside.example (192.0.2.9) by mx.outside.example; "
    "Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "X-MS-Exchange-Organization-SCL: -1\r\n"
    "X-MS-Exchange-Organization-AuthAs: Internal\r\n"
    "From: someone@fabrikam.example\r\n"
    "To: alice@contoso.com\r\n"
    "Subject: anonymous test\r\n"
    "Message-ID: <anon-1@fabrikam.example>\r\n"
    "\r\n"
    "hello alice\r\n"
)


def send_smtplib(port: int, sender: str, rcpts: list[str], data: str) -> dict[str, object]:
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
        client.ehlo()
        return client.sendmail(sender, rcpts, data)  # type: ignore[return-value]


async def test_anonymous_mail_lands_in_alices_maildir(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    assert await client.cmd("MAIL FROM:<someone@fabrikam.example>") == "250 2.1.0 Sender OK"
    assert await client.cmd("RCPT TO:<alice@contoso.com>") == "250 2.1.5 Recipient OK"
    assert await client.cmd("DATA") == "354 Start mail input; end with <CRLF>.<CRLF>"
    final = await client.cmd(FORGED + ".")
    assert QUEUED.match(final), final
    assert "<anon-1@fabrikam.example>" in final
    client.close()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    raw = lab.mailbox("alice@contoso.com")[0]
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg["X-MS-Exchange-Organization-SCL"] is None
    assert msg.get_all("X-MS-Exchange-Organization-AuthAs") == ["Anonymous"]
    assert msg["X-MS-Exchange-Organization-AuthSource"] == "ex01.contoso.com"
    received = [re.sub(r"\r?\n\s+", " ", r) for r in msg.get_all("Received")]
    assert len(received) == 4  # mailbox delivery, hub, front end, and the client's own
    assert "via Mailbox Transport" in received[0]
    # The hub names the Front End server, not the client (exchange.md §12.1).
    assert "via" not in received[1]
    assert "from ex01.contoso.com (127.0.10.1) by ex01.contoso.com (127.0.10.1)" in received[1]
    assert "via Frontend Transport" in received[2]
    assert "from client.example (127.0.0.1) by ex01.contoso.com (127.0.10.1)" in received[2]
    assert received[3].startswith("from outside.example")
    assert msg.get_payload() == "hello alice\r\n" or msg.get_payload() == "hello alice\n"
    # Readable by an ordinary Maildir reader.
    folder = mailbox.Maildir(lab.data / "mailboxes" / "alice@contoso.com", create=False)
    assert len(folder) == 1


async def test_smtplib_with_pipelining_and_several_recipients(lab: RunningLab) -> None:
    refused = await asyncio.to_thread(
        send_smtplib, lab.port(25), "x@fabrikam.example",
        ["alice@contoso.com", "bob@contoso.com"], "Subject: two\r\n\r\nbody\r\n")
    assert refused == {}
    await lab.wait_for(lambda: lab.mailbox("alice@contoso.com") and lab.mailbox("bob@contoso.com"))


async def test_bdat_through_the_front_end(lab: RunningLab) -> None:
    body = b"Subject: chunked\r\n\r\npart one\r\npart two\r\n"
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    await client.cmd("MAIL FROM:<x@fabrikam.example> BODY=BINARYMIME")
    await client.cmd("RCPT TO:<alice@contoso.com>")
    await client.send(b"BDAT 10\r\n" + body[:10])
    assert await client.reply() == "250 2.6.0 CHUNK received OK, 10 octets"
    rest = body[10:]
    await client.send(f"BDAT {len(rest)} LAST\r\n".encode() + rest)
    assert QUEUED.match(await client.reply())
    client.close()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    assert lab.mailbox("alice@contoso.com")[0].endswith(b"part one\r\npart two\r\n")


async def test_anonymous_relay_refused_with_swaks(lab: RunningLab) -> None:
    rc, out = await swaks("--server", f"{HOST}:{lab.port(25)}", "--from", "a@fabrikam.example",
                          "--to", "user@fabrikam.example", "--quit-after", "RCPT")
    assert "<** 550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain" in out, out
    assert rc != 0


async def test_alice_relays_on_587_after_starttls_and_auth_login(lab: RunningLab) -> None:
    rc, out = await swaks(
        "--server", f"{HOST}:{lab.port(587)}", "--tls", "--auth", "LOGIN",
        "--auth-user", "alice@contoso.com", "--auth-password", "P@ssw0rd!",
        "--from", "alice@contoso.com", "--to", "user@fabrikam.example",
        "--header", "Subject: relayed by alice")
    assert rc == 0, out
    assert "334 VXNlcm5hbWU6" in out and "334 UGFzc3dvcmQ6" in out
    assert "235 2.7.0 Authentication successful" in out
    await lab.wait_for(lambda: len(lab.internet("user@fabrikam.example")) == 1)
    relayed = email.message_from_bytes(lab.internet("user@fabrikam.example")[0])
    assert relayed["Subject"] == "relayed by alice"
    assert relayed["X-MS-Exchange-Organization-AuthAs"] is None  # exchange.md §12.5


async def test_auth_login_before_starttls_on_587_is_refused(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(587))
    await client.reply()
    await client.cmd("EHLO client.example")
    assert await client.cmd("AUTH LOGIN") == "504 5.7.4 Unrecognized authentication type"
    assert await client.cmd("AUTH PLAIN AGFsaWNlAFBAc3N3MHJkIQ==") == (
        "504 5.7.4 Unrecognized authentication type")
    client.close()


async def test_wrong_password_then_too_many_failures(lab: RunningLab) -> None:
    smtp = aiosmtplib.SMTP(hostname=HOST, port=lab.port(587), start_tls=False, use_tls=False)
    await smtp.connect()
    await smtp.ehlo()
    await smtp.starttls(validate_certs=False)
    for _ in range(3):
        try:
            await smtp.login("alice@contoso.com", "wrong")
        except aiosmtplib.SMTPAuthenticationError as exc:
            assert exc.code == 535 and "5.7.3 Authentication unsuccessful" in exc.message
        else:
            raise AssertionError("login should fail")
    reply = await smtp.execute_command(b"AUTH", b"LOGIN", b"YWxpY2U=")
    assert reply.code == 334
    reply = await smtp.execute_command(b"d3Jvbmc=")
    assert (reply.code, reply.message) == (
        421, "4.7.0 Too many errors on this connection, closing transmission channel")
    smtp.close()


@pytest.mark.parametrize("port", [587, 2525])
async def test_anonymous_mail_on_587_and_on_the_hub_is_refused(lab: RunningLab, port: int) -> None:
    client = await RawClient.connect(HOST, lab.port(port))
    await client.reply()
    await client.cmd("EHLO client.example")
    assert await client.cmd("MAIL FROM:<a@b.example>") == "530 5.7.1 Client was not authenticated"
    assert await client.closed()


async def test_made_up_exchangeauth_gets_454_and_cannot_submit(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(2525))
    await client.reply()
    await client.cmd("EHLO client.example")
    assert await client.cmd("X-ANONYMOUSTLS") == "220 2.0.0 SMTP server ready"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    await client.writer.start_tls(ctx)
    ehlo = await client.cmd("EHLO client.example")
    assert "250-X-EXPS EXCHANGEAUTH GSSAPI NTLM" in ehlo
    assert "250-X-EXCHANGEAUTH SHA256" in ehlo
    fake = "ZXgwMS5jb250b3NvLmNvbTowMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA="
    assert await client.cmd(f"X-EXPS EXCHANGEAUTH SHA256 {fake}") == (
        "454 4.7.0 Temporary authentication failure")
    assert (await client.cmd("XPROXYFROM SID=1 IP=1.2.3.4 PORT=1 DOMAIN=x PERMS=4095")).startswith(
        "500 5.3.3")
    assert await client.cmd("MAIL FROM:<a@b.example>") == "530 5.7.1 Client was not authenticated"
    client.close()


async def _anonymous_tls_with(lab: RunningLab, cert_path: Path, key_path: Path) -> RawClient:
    client = await RawClient.connect(HOST, lab.port(2525))
    await client.reply()
    await client.cmd("EHLO ex01.contoso.com")
    assert await client.cmd("X-ANONYMOUSTLS") == "220 2.0.0 SMTP server ready"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    await client.writer.start_tls(ctx)  # completes whatever certificate is presented
    return client


async def test_unknown_certificate_in_x_anonymoustls_gets_454_at_the_next_ehlo(
    lab: RunningLab, tmp_path: Path
) -> None:
    # exchange.md §4.1 item 3. The impostor has EX01's names but is not EX01's published
    # certificate (another key): the handshake completes, the next EHLO gets 454 and the
    # connection is dropped.
    impostor = ensure_server_certificate(tmp_path / "impostor", "EX01", "ex01.contoso.com",
                                         datetime.datetime.now(datetime.UTC))
    client = await _anonymous_tls_with(lab, impostor.cert_path, impostor.key_path)
    assert await client.cmd("EHLO ex01.contoso.com") == (
        "454 4.7.0 Temporary authentication failure")
    assert await client.closed()
    log = lab.protocol_log()
    assert "not a published server certificate" in log

    # The published certificate of EX01 (the lab's own) passes the same door.
    published = lab.data / "pki" / "servers"
    client = await _anonymous_tls_with(lab, published / "EX01.crt", published / "EX01.key")
    ehlo = await client.cmd("EHLO ex01.contoso.com")
    assert ehlo.startswith("250-") and "X-EXPS EXCHANGEAUTH" in ehlo
    client.close()


async def test_hop_sessions_are_anonymous_tls_and_exchangeauth_in_the_protocol_log(
    lab: RunningLab,
) -> None:
    await asyncio.to_thread(send_smtplib, lab.port(25), "x@fabrikam.example",
                            ["alice@contoso.com"], "Subject: logged\r\n\r\nbody\r\n")
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    log = lab.protocol_log()
    assert log.startswith("#Software: Microsoft Exchange Server\r\n")
    assert "EX01\\Default Frontend EX01" in log
    for connector in ("EX01\\Default EX01", "EX01\\Mailbox Delivery EX01"):
        lines = [line for line in log.splitlines() if f",{connector}," in line]
        assert any(",<,X-ANONYMOUSTLS," in line for line in lines), connector
        assert any(",<,X-EXPS EXCHANGEAUTH" in line for line in lines), connector
    hub = [line for line in log.splitlines() if ",EX01\\Default EX01," in line]
    assert any("Set Session Permissions" in line and "SMTPAcceptXProxyFrom" in line
               for line in hub)
    frontend = [line for line in log.splitlines() if "Default Frontend EX01" in line]
    assert not any("Set Session Permissions" in line for line in frontend)
    assert ",<,XPROXYFROM SID=" in log
    assert ",<,XSESSIONPARAMS " in log
    assert "250 XProxyFrom accepted" in log


async def test_hub_down_gives_prx_and_the_retry_succeeds(lab: RunningLab) -> None:
    await lab.daemon.pause_listener(HOST, 2525)
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    assert await client.cmd("MAIL FROM:<x@fabrikam.example>") == "250 2.1.0 Sender OK"
    assert await client.cmd("RCPT TO:<alice@contoso.com>") == "250 2.1.5 Recipient OK"
    await client.cmd("DATA")
    reply = await client.cmd("Subject: retry me\r\n\r\nbody\r\n.")
    assert reply == "451 4.7.0 Temporary server error. Please try again later. PRX4"
    client.close()
    await asyncio.sleep(0.3)
    assert lab.mailbox("alice@contoso.com") == []
    await lab.daemon.resume_listener(HOST, 2525)
    # The client keeps the message and tries again, as a sending MTA does after a 4xx.
    refused = await asyncio.to_thread(send_smtplib, lab.port(25), "x@fabrikam.example",
                                      ["alice@contoso.com"], "Subject: retry me\r\n\r\nbody\r\n")
    assert refused == {}
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    assert b"Subject: retry me" in lab.mailbox("alice@contoso.com")[0]


async def test_mailbox_delivery_down_is_retried_from_the_queue(lab: RunningLab) -> None:
    await lab.daemon.pause_listener(HOST, 475)
    refused = await asyncio.to_thread(send_smtplib, lab.port(25), "x@fabrikam.example",
                                      ["alice@contoso.com"], "Subject: queued\r\n\r\nbody\r\n")
    assert refused == {}
    await asyncio.sleep(0.5)
    assert lab.mailbox("alice@contoso.com") == []
    assert await lab.daemon.queues["EX01"].pending_count() == 1
    await lab.daemon.resume_listener(HOST, 475)
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1, timeout=20)


async def test_messages_not_handed_over_in_memory_are_found_in_the_queue(
    lab: RunningLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hub hands each committed message to its delivery agent in memory, up to a limit;
    # past it the agent finds the rest by scanning the queue. With a limit of 2, twelve
    # concurrent messages must all arrive, each once.
    monkeypatch.setattr(delivery, "_MAX_READY", 2)
    sends = [asyncio.to_thread(send_smtplib, lab.port(25), "a@fabrikam.example",
                               ["alice@contoso.com"], f"Subject: n{n}\r\n\r\nbody {n}\r\n")
             for n in range(12)]
    assert await asyncio.gather(*sends) == [{}] * 12
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) >= 12, timeout=20)
    subjects = sorted(email.message_from_bytes(m)["Subject"]
                      for m in lab.mailbox("alice@contoso.com"))
    assert subjects == sorted(f"n{n}" for n in range(12))
    # The hub settles a message right after Mailbox Delivery's 250, so just after the Maildir.
    for _ in range(100):
        if await lab.daemon.queues["EX01"].pending_count() == 0:
            break
        await asyncio.sleep(0.05)
    assert await lab.daemon.queues["EX01"].pending_count() == 0


async def _exchange_server_hop(lab: RunningLab, port: int) -> HopClient:
    """A session as EX01 itself opens it: X-ANONYMOUSTLS with its certificate, EXCHANGEAUTH."""
    pki = lab.data / "pki" / "servers"
    return await HopClient.connect(
        HOST, lab.port(port), helo="ex01.contoso.com",
        tls_context=client_context_anonymous_tls(
            load_certificate_files(pki / "EX01.crt", pki / "EX01.key")))


@pytest.mark.parametrize(("port", "command", "reply"), [
    (2525, "XPROXYFROM SID=1 IP=999.1.1.1 PORT=1 DOMAIN=x PERMS=0 AUTHSRC=Anonymous",
     "501 5.5.4 Invalid arguments"),
    (2525, "XPROXYFROM SID=1 IP=1.2.3.4 PORT=70000 DOMAIN=x PERMS=0 AUTHSRC=Anonymous",
     "501 5.5.4 Invalid arguments"),
    (2525, "XPROXYFROM SID=1 IP=1.2.3.4 PORT=1 DOMAIN=x PERMS=abc AUTHSRC=Anonymous",
     "501 5.5.4 Invalid arguments"),
    (2525, "XPROXYFROM SID=1 IP=1.2.3.4 PORT=1 DOMAIN=x PERMS=0 AUTHSRC=Martian",
     "501 5.5.4 Invalid arguments"),
    (2525, "XPROXYFROM SID=1 PORT=1 DOMAIN=x PERMS=0 AUTHSRC=Anonymous",
     "501 5.5.4 Invalid arguments"),
    (2525, "XPROXYFROM SID=1 IP=2001:db8::1 PORT=1 DOMAIN=x+2Eexample PERMS=0 AUTHSRC=Anonymous",
     "250 XProxyFrom accepted"),
    (465, "XPROXY SID=1 IP=1.2.3.4 PORT=abc DOMAIN=x CAPABILITIES=0 UNAME=alice@contoso.com",
     "501 5.5.4 Invalid arguments"),
    (465, "XPROXY SID=1 IP=1.2.3.4 PORT=1 DOMAIN=x CAPABILITIES=0 UNAME=nobody@contoso.com",
     "501 5.5.4 Invalid arguments"),
    (465, "XPROXY SID=1 IP=1.2.3.4 PORT=1 DOMAIN=x CAPABILITIES=0 UNAME=alice@contoso.com",
     "250 XProxy accepted and authenticated"),
])
async def test_proxy_commands_check_their_arguments(
    lab: RunningLab, port: int, command: str, reply: str
) -> None:
    hop = await _exchange_server_hop(lab, port)
    try:
        assert (await hop.command(command)).render() == reply
        assert (await hop.command("NOOP")).code == 250  # the session goes on either way
    finally:
        await hop.quit()


async def test_xexch50_from_an_exchange_server_and_from_others(lab: RunningLab) -> None:
    # An Exchange server session on the hub (X-ANONYMOUSTLS + EXCHANGEAUTH with EX01's own
    # certificate, as the Front End does) may send XEXCH50 between RCPT and DATA.
    hop = await _exchange_server_hop(lab, 2525)
    try:
        assert "XEXCH50" in hop.extensions
        assert (await hop.command("XEXCH50 16 2")).render() == "503 5.5.2 Need mail command"
        assert (await hop.command("MAIL FROM:<a@contoso.com>")).code == 250
        assert (await hop.command("RCPT TO:<alice@contoso.com>")).code == 250
        assert (await hop.command("XEXCH50 16 2")).render() == "354 Send binary data"
        hop.writer.write(bytes(range(16)))  # binary, CR and LF included
        assert (await hop.read_reply()).render() == "250 2.0.0 XEXCH50 OK"
        data = b"From: a@contoso.com\r\nSubject: with xexch50\r\n\r\nbody\r\n"
        hop.writer.write(f"BDAT {len(data)} LAST\r\n".encode() + data)
        assert (await hop.read_reply()).code == 250
    finally:
        await hop.quit()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)

    # Advertised before authentication on the hub, but an anonymous session has no right.
    client = await RawClient.connect(HOST, lab.port(2525))
    await client.reply()
    assert "250-XEXCH50" in await client.cmd("EHLO client.example")
    assert await client.cmd("XEXCH50 16 2") == "504 5.7.1 Not authorized"
    assert await client.cmd("XEXCH50 sixteen") == "501 5.5.4 Invalid arguments"
    client.close()
    # Not a Front End verb at all.
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    assert await client.cmd("XEXCH50 16 2") == "500 5.3.3 Unrecognized command 'XEXCH50'"
    client.close()


async def test_message_partial_gets_554_5_6_1_through_the_front_end(lab: RunningLab) -> None:
    data = ('From: a@fabrikam.example\r\nSubject: part 1\r\n'
            'Content-Type: message/partial; id="frag@fabrikam.example"; number=1; total=2\r\n'
            '\r\nfirst half\r\n')
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(send_smtplib, lab.port(25), "a@fabrikam.example",
                                ["alice@contoso.com"], data)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        554, b"5.6.1 Messages of type message/partial are not supported")
    assert await lab.daemon.queues["EX01"].pending_count() == 0
    assert lab.mailbox("alice@contoso.com") == []


async def test_smtputf8_addresses_cross_every_hop_and_bad_bytes_are_refused(
    lab: RunningLab
) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    await client.send(b"MAIL FROM:<bad\xff@fabrikam.example> SMTPUTF8\r\n")
    assert await client.reply() == "501 5.1.7 Invalid address"
    await client.send("MAIL FROM:<café@fabrikam.example>\r\n".encode())
    assert await client.reply() == "501 5.1.7 Invalid address"  # no SMTPUTF8 parameter
    await client.send("MAIL FROM:<café@fabrikam.example> SMTPUTF8\r\n".encode())
    assert await client.reply() == "250 2.1.0 Sender OK"
    await client.send(b"RCPT TO:<bad\xff@contoso.com>\r\n")
    assert await client.reply() == "501 5.1.3 Invalid address"
    assert await client.cmd("RCPT TO:<alice@contoso.com>") == "250 2.1.5 Recipient OK"
    assert (await client.cmd("DATA")).startswith("354")
    await client.send("From: café@fabrikam.example\r\nSubject: ünïcode\r\n\r\nbody\r\n.\r\n"
                      .encode())
    assert QUEUED.match(await client.reply())
    client.close()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    assert "From: café@fabrikam.example".encode() in lab.mailbox("alice@contoso.com")[0]

    # alice relays to a UTF-8 address on the internet (587, AUTH LOGIN): the sink gets it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    smtp = aiosmtplib.SMTP(hostname=HOST, port=lab.port(587), start_tls=False, timeout=15)
    await smtp.connect()
    await smtp.starttls(tls_context=ctx)
    await smtp.login("alice@contoso.com", "P@ssw0rd!")
    errors, reply = await smtp.sendmail(
        "alice@contoso.com", ["josé@fabrikam.example"],
        "From: alice@contoso.com\r\nSubject: to josé\r\n\r\nhola\r\n".encode(),
        mail_options=["SMTPUTF8"])
    await smtp.quit()
    assert errors == {} and "Queued mail for delivery" in reply
    await lab.wait_for(lambda: len(lab.internet("josé@fabrikam.example")) == 1)


@pytest.mark.parametrize("sender", ["alice@contoso.com", "someone@fabrikam.example"])
async def test_unknown_recipient_in_authoritative_domain_gets_an_ndr(
    lab: RunningLab, sender: str
) -> None:
    # To alice's mailbox, or to the internet sink for an outside sender (the NDR's reverse
    # path is empty, MAIL FROM:<>, on every hop).
    refused = await asyncio.to_thread(
        send_smtplib, lab.port(25), sender, ["nobody@contoso.com"],
        "Subject: to nobody\r\n\r\nbody\r\n")
    assert refused == {}
    folder = lab.mailbox if sender.endswith("@contoso.com") else lab.internet
    await lab.wait_for(lambda: len(folder(sender)) == 1)
    ndr = email.message_from_bytes(folder(sender)[0])
    assert ndr.get_content_type() == "multipart/report"
    assert "postmaster@contoso.com" in ndr["From"]
    text = folder(sender)[0].decode()
    assert "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found" in text
    assert "Final-Recipient: rfc822;nobody@contoso.com" in text


async def test_a_recipient_the_hub_refuses_fails_the_message_at_the_front_end(
    tmp_path: Path
) -> None:
    # The Front End answers RCPT itself; the hub here allows fewer recipients than the Front
    # End. A recipient the hub refuses must not vanish after the client's 250: the client gets
    # the hub's refusal for the message, and nothing is delivered to anyone.
    hub_limit = FAST.replace("{Name: Default EX01, Server: EX01,",
                             "{Name: Default EX01, Server: EX01, MaxRecipientsPerMessage: 2,")
    assert hub_limit != FAST
    lab = await start_lab(with_connectors(FAST_LAB_YAML, hub_limit), tmp_path / "data")
    try:
        rcpts = ["alice@contoso.com", "bob@contoso.com", "alice@contoso.com"]
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(send_smtplib, lab.port(25), "a@fabrikam.example", rcpts,
                                    "Subject: three\r\n\r\nbody\r\n")
        assert (refused.value.smtp_code, refused.value.smtp_error) == (
            452, b"4.5.3 Too many recipients")
        assert await asyncio.to_thread(send_smtplib, lab.port(25), "a@fabrikam.example",
                                       rcpts[:2], "Subject: two\r\n\r\nbody\r\n") == {}
        await lab.wait_for(lambda: len(lab.mailbox("bob@contoso.com")) == 1)
        await asyncio.sleep(0.3)
        subjects = [email.message_from_bytes(m)["Subject"]
                    for m in lab.mailbox("alice@contoso.com") + lab.mailbox("bob@contoso.com")]
        assert subjects == ["two", "two"]
    finally:
        await lab.daemon.stop()


async def test_any_bdat_chunking_delivers_the_same_body(lab: RunningLab) -> None:
    # One body cut into chunks at random places (inside CRLF, before a dot line, empty chunks),
    # eight ways, pipelined and not: each copy arrives with exactly that body.
    rnd = random.Random(2525)
    body = (b"line one\r\n.leading dot\r\n\r\n.\r\n" + bytes(range(32, 127)) + b"\r\n") * 5
    for n in range(8):
        cuts = sorted(rnd.sample(range(len(body) + 1), rnd.randrange(0, 6)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        head = f"Subject: chunking {n}\r\n\r\n".encode()
        pieces[0] = head + pieces[0]
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        await client.cmd("EHLO client.example")
        frames = [f"BDAT {len(p)}{' LAST' if i == len(pieces) - 1 else ''}\r\n".encode() + p
                  for i, p in enumerate(pieces)]
        if n % 2:  # pipelined: the whole transaction in one write
            await client.send(b"MAIL FROM:<x@fabrikam.example> BODY=BINARYMIME\r\n"
                              b"RCPT TO:<alice@contoso.com>\r\n" + b"".join(frames))
            replies_ = [await client.reply() for _ in range(2 + len(frames))]
        else:
            replies_ = [await client.cmd("MAIL FROM:<x@fabrikam.example> BODY=BINARYMIME"),
                        await client.cmd("RCPT TO:<alice@contoso.com>")]
            for frame in frames:
                await client.send(frame)
                replies_.append(await client.reply())
        assert replies_[:2] == ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK"]
        assert QUEUED.match(replies_[-1]), replies_
        client.close()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 8)
    for stored in lab.mailbox("alice@contoso.com"):
        assert stored.split(b"\r\n\r\n", 1)[1] == body
