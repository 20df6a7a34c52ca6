"""Timers, tarpitting and Integrated (NTLM) authentication on real sessions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import smtplib
import ssl
import time
from pathlib import Path

import spnego

from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RawClient,
    start_lab,
    with_connectors,
)

HOST = "127.0.10.1"

TIMERS = """
  - {Name: Default Frontend EX01, Server: EX01, ConnectionInactivityTimeout: "00:00:01",
     ConnectionTimeout: "00:00:03", TarpitInterval: "00:00:01"}
"""


async def test_inactivity_timeout_connection_timeout_and_tarpit(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, TIMERS), tmp_path / "data")
    try:
        # Idle: 451 4.7.0 after ConnectionInactivityTimeout, then the connection closes.
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        started = time.monotonic()
        assert await client.reply(timeout=5) == "451 4.7.0 Timeout waiting for client input"
        assert 0.8 < time.monotonic() - started < 3
        assert await client.closed()
        # Idle during DATA too.
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        await client.cmd("EHLO client.example")
        await client.cmd("MAIL FROM:<a@fabrikam.example>")
        await client.cmd("RCPT TO:<alice@contoso.com>")
        assert (await client.cmd("DATA")).startswith("354")
        await client.send(b"Subject: slow\r\n")
        assert await client.reply(timeout=5) == "451 4.7.0 Timeout waiting for client input"
        assert await client.closed()
        # Absolute: a client that keeps talking is cut off after ConnectionTimeout.
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        started = time.monotonic()
        reply = ""
        while not reply.startswith("421"):
            await asyncio.sleep(0.5)
            reply = await client.cmd("NOOP")
        assert reply == "421 4.4.1 Connection timed out"
        assert 2.5 < time.monotonic() - started < 5
        # Tarpit: an error reply to an anonymous client waits TarpitInterval and is logged.
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        await client.cmd("EHLO client.example")
        await client.cmd("MAIL FROM:<a@fabrikam.example>")
        started = time.monotonic()
        assert (await client.cmd("RCPT TO:<x@fabrikam.example>")).startswith("550 5.7.54")
        assert time.monotonic() - started >= 0.9
        started = time.monotonic()
        assert (await client.cmd("RCPT TO:<alice@contoso.com>")) == "250 2.1.5 Recipient OK"
        assert time.monotonic() - started < 0.5
        client.close()
        assert ",*,Tarpit for '0.00:00:01'," in lab.protocol_log()  # the data field
    finally:
        await lab.daemon.stop()


async def test_ntlm_logon_on_client_frontend(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, """
  - {Name: Client Frontend EX01, Server: EX01, AuthTarpitInterval: "00:00:00"}
"""), tmp_path / "data")
    try:
        for user, password, ok in (("CONTOSO\\alice", "P@ssw0rd!", True),
                                   ("CONTOSO\\alice", "wrong", False)):
            client = await RawClient.connect(HOST, lab.port(587))
            await client.reply()
            assert "AUTH GSSAPI NTLM" in await client.cmd("EHLO client.example")
            assert await client.cmd("AUTH NTLM") == "334 NTLM supported"
            ntlm = spnego.client(user, password, protocol="ntlm")
            challenge = await client.cmd(base64.b64encode(ntlm.step() or b"").decode())
            assert challenge.startswith("334 ")
            answer = ntlm.step(base64.b64decode(challenge[4:]))
            final = await client.cmd(base64.b64encode(answer or b"").decode())
            if ok:
                assert final == "235 2.7.0 Authentication successful"
                assert await client.cmd("MAIL FROM:<alice@contoso.com>") == "250 2.1.0 Sender OK"
            else:
                assert final == "535 5.7.3 Authentication unsuccessful"
            client.close()
    finally:
        await lab.daemon.stop()


async def test_connections_per_source(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, """
  - {Name: Default Frontend EX01, Server: EX01, MaxInboundConnectionPerSource: 2}
"""), tmp_path / "data")
    try:
        first = await RawClient.connect(HOST, lab.port(25))
        second = await RawClient.connect(HOST, lab.port(25))
        assert (await first.reply()).startswith("220 ")
        assert (await second.reply()).startswith("220 ")
        third = await RawClient.connect(HOST, lab.port(25))
        assert await third.reply() == (
            "421 4.3.2 The maximum number of concurrent connections has exceeded a limit, "
            "closing transmission channel")
        assert await third.closed()
        other = await RawClient.connect(HOST, lab.port(25), source="127.0.0.2")
        assert (await other.reply()).startswith("220 ")
        first.close()
        await asyncio.sleep(0.2)
        fourth = await RawClient.connect(HOST, lab.port(25))
        assert (await fourth.reply()).startswith("220 ")
        for c in (second, other, fourth):
            c.close()
        # Every count goes back to zero once the sessions are gone (refused ones never counted).
        node = lab.daemon.nodes["EX01"]
        frontend = next(c for c in node.index.connectors if c.name == "Default Frontend EX01")
        await lab.wait_for(lambda: node.connection_counts(frontend, "127.0.0.1") == (0, 0))
        assert node.connection_counts(frontend, "127.0.0.2") == (0, 0)
    finally:
        await lab.daemon.stop()


def _submit_on_587(port: int, user: str, count: int) -> list[object]:
    """smtplib: STARTTLS, AUTH LOGIN, then ``count`` messages on one connection; each result
    is {} (accepted) or the exception that ended the session."""
    results: list[object] = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    client = smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15)
    try:
        client.starttls(context=ctx)
        client.login(user, "P@ssw0rd!")
        for n in range(count):
            try:
                results.append(client.sendmail(user, ["alice@contoso.com"],
                                                f"Subject: {n}\r\n\r\nbody\r\n"))
            except (smtplib.SMTPSenderRefused, smtplib.SMTPServerDisconnected) as exc:
                results.append(exc)
                break
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
    return results


async def test_client_frontend_message_rate_limit_is_five_per_minute_per_user(
        tmp_path: Path) -> None:
    # Client Frontend's setup values: MessageRateLimit 5, MessageRateSource User (exchange.md §3.3).
    # (FAST only sets the tarpits to zero.)
    lab = await start_lab(with_connectors(FAST_LAB_YAML, FAST), tmp_path / "data")
    try:
        got = await asyncio.to_thread(_submit_on_587, lab.port(587), "alice@contoso.com", 7)
        assert got[:5] == [{}] * 5
        assert isinstance(got[5], smtplib.SMTPSenderRefused)
        assert (got[5].smtp_code, got[5].smtp_error) == (
            421, b"4.4.2 Message submission rate for this client has exceeded the configured limit")
        assert len(got) == 6  # the 421 closed the connection
        # The count belongs to the user, not to the session or the address: a new session of
        # alice is refused at once, bob from the same address is not.
        again = await asyncio.to_thread(_submit_on_587, lab.port(587), "alice@contoso.com", 1)
        assert isinstance(again[0], smtplib.SMTPSenderRefused) and again[0].smtp_code == 421
        bob = await asyncio.to_thread(_submit_on_587, lab.port(587), "bob@contoso.com", 1)
        assert bob == [{}]
    finally:
        await lab.daemon.stop()


async def test_message_rate_limit_per_address_on_a_custom_connector(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, """
  - {Name: Limited EX01, Server: EX01, TransportRole: FrontendTransport, Usage: Custom,
     Bindings: ["0.0.0.0:25"], RemoteIPRanges: ["127.0.23.0/24"], PermissionGroups: [AnonymousUsers],
     MessageRateLimit: 2, MessageRateSource: IPAddress, TarpitInterval: "00:00:00"}
"""), tmp_path / "data")
    try:
        async def one(source: str) -> str:
            client = await RawClient.connect(HOST, lab.port(25), source=source)
            await client.reply()
            await client.cmd("EHLO client.example")
            reply = await client.cmd("MAIL FROM:<a@fabrikam.example>")
            if reply.startswith("250"):
                await client.cmd("QUIT")
            else:
                assert await client.closed()
            client.close()
            return reply

        assert await one("127.0.23.5") == "250 2.1.0 Sender OK"
        assert await one("127.0.23.5") == "250 2.1.0 Sender OK"
        assert await one("127.0.23.5") == (
            "421 4.4.2 Message submission rate for this client has exceeded the configured limit")
        assert await one("127.0.23.6") == "250 2.1.0 Sender OK"  # another address
        assert await one("127.0.0.1") == "250 2.1.0 Sender OK"  # Default Frontend: unlimited
    finally:
        await lab.daemon.stop()


async def test_a_refused_bdat_chunk_that_never_comes_times_out(tmp_path: Path) -> None:
    # BDAT without MAIL is refused, but its chunk is still read (and dropped) first; a client
    # that never sends it hits ConnectionInactivityTimeout like any other read.
    lab = await start_lab(with_connectors(FAST_LAB_YAML, TIMERS), tmp_path / "data")
    try:
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        await client.cmd("EHLO client.example")
        await client.send(b"BDAT 100000 LAST\r\n" + b"x" * 70000)  # 30,000 bytes short
        assert await client.reply(timeout=5) == "451 4.7.0 Timeout waiting for client input"
        assert await client.closed()
    finally:
        await lab.daemon.stop()
