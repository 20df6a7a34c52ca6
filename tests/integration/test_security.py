"""Security inputs of security.md: SMTP smuggling (security.md §1), STARTTLS injection (§2)."""

from __future__ import annotations

import asyncio
import random
import re
import ssl

import pytest

from tests.integration.conftest import RawClient, RunningLab

HOST = "127.0.10.1"
CANDIDATES = [b"\n.\n", b"\n.\r", b"\r.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n", b"\r\n\x00.\r\n"]


async def only_the_first_message_arrived(lab: RunningLab, smuggled_text: bytes) -> None:
    """alice got one message, which carries the smuggling attempt as content; bob got none;
    no bare CR or LF leaves exchsim (every line ending in the stored copy is CRLF)."""
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    await asyncio.sleep(0.3)
    assert lab.mailbox("bob@contoso.com") == []
    assert len(lab.mailbox("alice@contoso.com")) == 1
    stored = lab.mailbox("alice@contoso.com")[0]
    assert smuggled_text in stored
    assert stored.replace(b"\r\n", b"").count(b"\n") == 0
    assert stored.replace(b"\r\n", b"").count(b"\r") == 0


@pytest.mark.parametrize("candidate", CANDIDATES, ids=[repr(c) for c in CANDIDATES])
@pytest.mark.parametrize("port", [25, 2525])
async def test_each_end_of_data_candidate_yields_at_most_one_message(
    lab: RunningLab, candidate: bytes, port: int
) -> None:
    client = await RawClient.connect(HOST, lab.port(port))
    await client.reply()
    await client.cmd("EHLO client.example")
    first = await client.cmd("MAIL FROM:<a@fabrikam.example>")
    if port == 2525:
        assert first.startswith("530")  # anonymous cannot even start on the hub
        return
    await client.cmd("RCPT TO:<alice@contoso.com>")
    assert (await client.cmd("DATA")).startswith("354")
    payload = (
        b"From: a@fabrikam.example\r\nSubject: first\r\nMessage-ID: <first@x>\r\n\r\nbody\r\n"
        + candidate
        + b"mail FROM:<smuggled@fabrikam.example>\r\nrcpt TO:<bob@contoso.com>\r\ndata\r\n"
        + b"From: smuggled@fabrikam.example\r\nSubject: smuggled\r\nMessage-ID: <second@x>\r\n"
        + b"\r\nsmuggled body\r\n.\r\n"
    )
    await client.send(payload)
    reply = await client.reply()
    assert reply.startswith("250 2.6.0 <first@x>")
    # Nothing more: the smuggled commands were message content.
    await client.send(b"NOOP\r\n")
    assert await client.reply() == "250 2.0.0 OK"
    client.close()
    await only_the_first_message_arrived(lab, b"smuggled body")


@pytest.mark.parametrize("injected", [
    b"RSET\r\n", b"EHLO evil\r\n", b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@contoso.com>\r\n",
])
async def test_starttls_injection_gets_no_reply_inside_tls(lab: RunningLab, injected: bytes) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    await client.send(b"STARTTLS\r\n" + injected)
    assert await client.reply() == "220 2.0.0 SMTP server ready"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    await client.writer.start_tls(ctx)
    # The first reply inside TLS must answer our own command, not the injected ones.
    assert await client.cmd("NOOP") == "250 2.0.0 OK"
    assert (await client.cmd("MAIL FROM:<a@b.example>")) == "503 5.5.2 Send hello first"
    client.close()


async def test_second_starttls_and_starttls_with_argument(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    assert (await client.cmd("STARTTLS now")).startswith("500 5.3.3")
    assert await client.cmd("STARTTLS") == "220 2.0.0 SMTP server ready"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    await client.writer.start_tls(ctx)
    await client.cmd("EHLO client.example")
    assert await client.cmd("STARTTLS") == (
        "503 5.5.2 Only one STARTTLS command can be issued per session")
    client.close()


@pytest.mark.parametrize("candidate", CANDIDATES, ids=[repr(c) for c in CANDIDATES])
async def test_bdat_chunks_never_start_a_second_message(lab: RunningLab, candidate: bytes) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    await client.cmd("MAIL FROM:<a@fabrikam.example>")
    await client.cmd("RCPT TO:<alice@contoso.com>")
    chunk = (b"Subject: first\r\nMessage-ID: <first@x>\r\n\r\nbody" + candidate
             + b"MAIL FROM:<smuggled@fabrikam.example>\r\nRCPT TO:<bob@contoso.com>\r\n"
             + b"BDAT 5 LAST\r\nhello")
    await client.send(f"BDAT {len(chunk)} LAST\r\n".encode() + chunk)
    assert (await client.reply()).startswith("250 2.6.0 <first@x>")
    assert await client.cmd("NOOP") == "250 2.0.0 OK"
    client.close()
    await only_the_first_message_arrived(lab, b"smuggled@fabrikam.example")


@pytest.mark.parametrize("after", [b"EHLO not tls\r\n", b"\x16\x03\x01\x00\x05hello", b""])
async def test_broken_handshake_after_x_anonymoustls_ends_the_session_cleanly(
    lab: RunningLab, after: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # Plain text, a truncated ClientHello, or a client that just hangs up after the 220:
    # the session ends, nothing is logged as an error, and the listener keeps serving.
    client = await RawClient.connect(HOST, lab.port(2525))
    await client.reply()
    await client.cmd("EHLO ex01.contoso.com")
    assert await client.cmd("X-ANONYMOUSTLS") == "220 2.0.0 SMTP server ready"
    if after:
        await client.send(after)
        assert await client.closed(timeout=10)
    client.close()
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    again = await RawClient.connect(HOST, lab.port(2525))
    assert (await again.reply()).startswith("220 ")
    again.close()


VERBS = ["HELO", "EHLO", "MAIL FROM:", "RCPT TO:", "DATA", "BDAT", "RSET", "NOOP", "VRFY",
         "EXPN", "HELP", "AUTH", "X-EXPS", "XPROXYFROM", "XPROXY", "XSESSIONPARAMS", "XEXCH50",
         "STARTTLS", "X-ANONYMOUSTLS", "MAIL", "RCPT", ""]


def _random_line(rnd: random.Random) -> bytes:
    verb = rnd.choice(VERBS)
    alphabet = b"<>@.:=,;[]()\"\\ \t/+-_" + bytes(range(0x21, 0x7F)) + bytes([0, 0x7F, 0xC3, 0xA9, 0xFF])
    arg = bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 60)))
    if verb in ("STARTTLS", "X-ANONYMOUSTLS", "DATA") and rnd.random() < 0.8:
        arg = b"x"  # with an argument: refused, so the session stays in plain text
    if verb == "BDAT":
        # Never a size the server would wait for: it reads a chunk before it answers.
        arg = rnd.choice([b"", b"x", b"-1", b"1x", b"0 LAST", b"0 last", b"0", b"1 2 3", b"LAST"])
    return (verb.encode() + (b" " if arg else b"") + arg).replace(b"\r", b"").replace(b"\n", b"")


@pytest.mark.parametrize("port", [25, 2525, 475])
async def test_random_commands_get_smtp_replies_and_no_tracebacks(
    lab: RunningLab, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    rnd = random.Random(port)
    reply_line = re.compile(r"^[2-5]\d\d[ -]")
    sessions = 0
    sent = 0
    while sent < 150:
        client = await RawClient.connect(HOST, lab.port(port))
        sessions += 1
        assert reply_line.match(await client.reply())
        try:
            while sent < 150:
                line = _random_line(rnd)
                sent += 1
                await client.send(line + b"\r\n")
                try:
                    reply = await client.reply(timeout=5)
                except TimeoutError:
                    raise AssertionError(f"no reply to {line!r}") from None
                assert all(reply_line.match(r) for r in reply.split("\r\n")), (line, reply)
                if reply[:3] in ("421", "221") or reply.startswith(("500 5.5.2", "354")):
                    break  # the server closes (or waits for data): start a new session
        except asyncio.IncompleteReadError:
            pass  # closed after a closing reply
        finally:
            client.close()
    assert sessions >= 1
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], [
        r.getMessage() for r in caplog.records]
