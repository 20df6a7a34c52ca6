"""TLS session resumption on the hops, through a real lab (exchange.md §4.10).

Full and resumed handshakes on the same hop with EXCHANGEAUTH and mail over both; a client
cache that outlives its server (restart) falls back to a full handshake; a tls-unique that is
not the resumed session's own still fails EXCHANGEAUTH.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

from exchsim.daemon import LabDaemon
from exchsim.tls.contexts import client_context_anonymous_tls
from exchsim.tls.directtrust import make_exchangeauth_blob
from exchsim.tls.judged import JudgedServerContext
from exchsim.tls.pki import load_certificate_files
from exchsim.tls.resumption import ClientSessionCache
from exchsim.transport.hopclient import HopClient
from tests.integration.conftest import RawClient, RunningLab

HOST = "127.0.10.1"
MAILBOX_DELIVERY = 475


def ex01_cache(lab: RunningLab) -> ClientSessionCache:
    """A hop client cache with EX01's own certificate, as EX01's hub holds one."""
    pki = lab.data / "pki" / "servers"
    context = client_context_anonymous_tls(load_certificate_files(pki / "EX01.crt",
                                                                  pki / "EX01.key"))
    return ClientSessionCache(context, lab.daemon.clock.monotonic)


def judged(lab: RunningLab) -> JudgedServerContext:
    context = lab.daemon.nodes["EX01"].anonymous_tls_context()
    assert isinstance(context, JudgedServerContext)
    return context


async def deliver(lab: RunningLab, cache: ClientSessionCache, subject: str) -> bool:
    """One hop to Mailbox Transport Delivery (475) as EX01's hub makes it: X-ANONYMOUSTLS,
    EXCHANGEAUTH (HopClient.connect raises unless 235), XSESSIONPARAMS, one message.
    Returns whether the TLS session was resumed."""
    hop = await HopClient.connect(HOST, lab.port(MAILBOX_DELIVERY), helo="ex01.contoso.com",
                                  tls_context=cache)
    try:
        reply = await hop.command("XSESSIONPARAMS MDBGUID=00000000-0000-0000-0000-000000000000"
                                  " TYPE=Delivery")
        assert reply.code == 250, reply.render()
        data = (f"From: x@fabrikam.example\r\nTo: alice@contoso.com\r\nSubject: {subject}\r\n"
                f"Message-ID: <{subject}@fabrikam.example>\r\n\r\nbody\r\n").encode()
        result = await hop.send_message("x@fabrikam.example", f"SIZE={len(data)}",
                                        ["alice@contoso.com"], data)
        assert result.reply.code == 250, result.reply.render()
        return hop.session_reused
    finally:
        await hop.quit()


def subjects(lab: RunningLab) -> list[str]:
    return sorted(m.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
                  for m in lab.mailbox("alice@contoso.com"))


async def test_full_then_resumed_handshake_on_a_hop_with_exchangeauth_and_mail(
    lab: RunningLab,
) -> None:
    server = judged(lab)
    cache = ex01_cache(lab)
    before = (server.full_handshakes, server.resumed_handshakes)
    assert await deliver(lab, cache, "first") is False
    assert await deliver(lab, cache, "second") is True
    assert await deliver(lab, cache, "third") is True
    assert (server.full_handshakes - before[0], server.resumed_handshakes - before[1]) == (1, 2)
    assert (cache.full_handshakes, cache.resumed_handshakes) == (1, 2)
    assert subjects(lab) == ["first", "second", "third"]


def send(port: int, subject: str) -> None:
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
        client.sendmail("x@fabrikam.example", ["alice@contoso.com"],
                        f"Subject: {subject}\r\n\r\nbody\r\n")


async def test_the_front_end_resumes_its_hop_to_the_hub_for_each_new_client(
    lab: RunningLab,
) -> None:
    # A new client connection per message means a new hop session from the Front End to the
    # hub (2525) per message: the first makes a full handshake, the others resume it.
    node = lab.daemon.nodes["EX01"]
    cache = node.client_tls_context()
    assert isinstance(cache, ClientSessionCache)
    for n in range(4):
        await asyncio.to_thread(send, lab.port(25), f"n{n}")
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 4)
    assert subjects(lab) == ["n0", "n1", "n2", "n3"]
    # FE -> 2525 four times: one full handshake, then three resumed. Hub -> 475 at least once
    # (its delivery agent keeps idle sessions; a second one opened while the first was still
    # authenticating would make a second full handshake).
    assert 2 <= cache.full_handshakes <= 3
    assert cache.resumed_handshakes >= 3
    assert judged(lab).resumed_handshakes == cache.resumed_handshakes


async def test_a_restarted_server_gets_a_full_handshake_and_then_resumes(
    lab: RunningLab, tmp_path: Path,
) -> None:
    cache = ex01_cache(lab)
    assert await deliver(lab, cache, "before") is False
    assert await deliver(lab, cache, "resumed") is True
    offered = cache.session_for(HOST, lab.port(MAILBOX_DELIVERY))
    assert offered is not None
    # The same lab again on the same ports and data: new processes' worth of state, an empty
    # server-side session cache; the client still offers its session.
    await lab.daemon.stop()
    lab.daemon = LabDaemon(lab.lab, lab.data, port_offset=lab.offset)
    await lab.daemon.start()
    assert await deliver(lab, cache, "after") is False
    assert cache.session_for(HOST, lab.port(MAILBOX_DELIVERY)) not in (None, offered)
    assert await deliver(lab, cache, "after-resumed") is True
    assert judged(lab).full_handshakes == 1 and judged(lab).resumed_handshakes == 1
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 4)


async def _resumed_anonymous_tls(lab: RunningLab, cache: ClientSessionCache,
                                 port: int) -> tuple[RawClient, ssl.SSLObject]:
    client = await RawClient.connect(HOST, lab.port(port))
    await client.reply()
    await client.cmd("EHLO ex01.contoso.com")
    assert await client.cmd("X-ANONYMOUSTLS") == "220 2.0.0 SMTP server ready"
    await client.writer.start_tls(cache.context_for(HOST, lab.port(port)))
    ssl_object: ssl.SSLObject = client.writer.get_extra_info("ssl_object")
    ehlo = await client.cmd("EHLO ex01.contoso.com")
    assert "X-EXPS EXCHANGEAUTH" in ehlo
    return client, ssl_object


async def test_exchangeauth_on_a_resumed_session_needs_that_sessions_tls_unique(
    lab: RunningLab,
) -> None:
    cache = ex01_cache(lab)
    assert await deliver(lab, cache, "full") is False  # puts a session in the cache

    # Bound to the resumed session's own tls-unique (the server's Finished): accepted.
    client, ssl_object = await _resumed_anonymous_tls(lab, cache, MAILBOX_DELIVERY)
    assert ssl_object.session_reused
    unique = ssl_object.get_channel_binding("tls-unique")
    assert unique is not None
    blob = make_exchangeauth_blob("ex01.contoso.com", unique)
    assert (await client.cmd(f"X-EXPS EXCHANGEAUTH SHA256 {blob}")).startswith("235 ")
    client.close()

    # Bound to another handshake's tls-unique (the previous resumption of the same session):
    # refused, as a replayed blob must be.
    client, ssl_object = await _resumed_anonymous_tls(lab, cache, MAILBOX_DELIVERY)
    assert ssl_object.session_reused
    wrong = make_exchangeauth_blob("ex01.contoso.com", unique)  # the previous handshake's
    assert await client.cmd(f"X-EXPS EXCHANGEAUTH SHA256 {wrong}") == (
        "454 4.7.0 Temporary authentication failure")
    assert await client.cmd("MAIL FROM:<a@b.example>") == (
        "530 5.7.1 Client was not authenticated")
    client.close()
