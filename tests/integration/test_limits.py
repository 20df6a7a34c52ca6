"""Timers, tarpitting and Integrated (NTLM) authentication on real sessions."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import spnego

from tests.integration.conftest import FAST_LAB_YAML, RawClient, start_lab, with_connectors

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
        assert "Tarpit for '0.00:00:01'" in lab.protocol_log()
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
