"""An intra-organization hop that fails after its TCP connect: the queue's LastError says what
went wrong in Exchange's form (policy/lasterror.py, exchange.md §8.5), never Python's text.

The hub's Mailbox Transport Delivery listener (127.0.10.1:475) is closed and a peer of the test's
own takes its address and port: a plain socket server in a thread, speaking just enough SMTP (and
TLS, with Python's ``ssl``) to fail the hop the way each test needs. The message is submitted by
aiosmtplib on 587 and the queue is read with ``exchsim queue`` over the lab's control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from tests.certfactory import make_leaf
from tests.integration.conftest import FAST, RunningLab, start_lab, with_connectors
from tests.integration.sendlab import lab_text, submit
from tests.integration.test_edge import (
    ALICE,
    EdgeLab,
    edge_lab,  # noqa: F401 (the fixture)
    exchsim_queue as edge_queue,
    send,
)
from tests.integration.test_queue_cli import SLOW_RETRY, queue_json
from tests.integration.test_queue_lasterror import EX02, SLOW

LED = "{LED=451 4.4.397 Error communicating with target host. -> "
TAIL = "};{MSG=};{FQDN=ex01.contoso.com};{IP=127.0.10.1};"
EHLO_REPLY = (b"250-ex01.contoso.com Hello [127.0.10.1]\r\n250-SIZE 37748736\r\n"
              b"250-PIPELINING\r\n250-X-ANONYMOUSTLS\r\n250 CHUNKING\r\n")

Script = Callable[[socket.socket], None]


def _line(sock: socket.socket) -> bytes:
    """One command line (up to LF); b"" when the client closed."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            return data
        data += chunk
    return data


class Peer:
    """A TCP listener on ``host:port`` that runs ``script`` on each connection it accepts."""

    def __init__(self, host: str, port: int, script: Script) -> None:
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.listener.settimeout(0.2)
        self.script = script
        self.connections = 0
        self.lines: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with contextlib.suppress(OSError), conn:
                conn.settimeout(10)
                self.script(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


def drops_after_ehlo(conn: socket.socket) -> None:
    """Greets, reads the EHLO and closes without a word (the connection dropped)."""
    conn.sendall(b"220 ex01.contoso.com Microsoft ESMTP MAIL Service ready\r\n")
    _line(conn)


def _to_tls(conn: socket.socket) -> None:
    conn.sendall(b"220 ex01.contoso.com Microsoft ESMTP MAIL Service ready\r\n")
    _line(conn)
    conn.sendall(EHLO_REPLY)
    assert _line(conn).startswith(b"X-ANONYMOUSTLS")
    conn.sendall(b"220 2.0.0 SMTP server ready\r\n")


def tls_fails(context: ssl.SSLContext) -> Script:
    """Offers X-ANONYMOUSTLS, then a TLS server that takes TLS 1.3 only: the hop client speaks
    TLS 1.2 only (Windows' profile), so the handshake fails."""
    def script(conn: socket.socket) -> None:
        _to_tls(conn)
        with contextlib.suppress(ssl.SSLError, OSError):
            context.wrap_socket(conn, server_side=True).close()
    return script


def refuses_exchangeauth(context: ssl.SSLContext) -> Script:
    """A good TLS handshake, then X-EXPS EXCHANGEAUTH refused as a failed logon."""
    def script(conn: socket.socket) -> None:
        _to_tls(conn)
        tls = context.wrap_socket(conn, server_side=True)
        _line(tls)
        tls.sendall(EHLO_REPLY.replace(b"250-X-ANONYMOUSTLS\r\n",
                                       b"250-X-EXPS EXCHANGEAUTH\r\n"))
        assert _line(tls).startswith(b"X-EXPS EXCHANGEAUTH")
        tls.sendall(b"535 5.7.3 Authentication unsuccessful\r\n")
        _line(tls)
        tls.close()
    return script


def drops_in_the_transaction(context: ssl.SSLContext) -> Script:
    """A whole hop session set up (TLS, EXCHANGEAUTH, XSESSIONPARAMS), then the connection
    closed once MAIL, RCPT and BDAT arrive: the message's outcome is unknown, a transient
    failure of the message rather than of the destination."""
    def script(conn: socket.socket) -> None:
        _to_tls(conn)
        tls = context.wrap_socket(conn, server_side=True)
        _line(tls)
        tls.sendall(EHLO_REPLY.replace(b"250-X-ANONYMOUSTLS\r\n",
                                       b"250-X-EXPS EXCHANGEAUTH\r\n"))
        _line(tls)
        tls.sendall(b"235 <authentication information>\r\n")
        assert _line(tls).startswith(b"XSESSIONPARAMS")
        tls.sendall(b"250 2.0.0 XSESSIONPARAMS OK\r\n")
        assert _line(tls).startswith(b"MAIL FROM:")
        tls.close()
    return script


def never_answers(conn: socket.socket) -> None:
    """Takes the connection and says nothing until the client gives up."""
    _line(conn)


class _Labs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[RunningLab] = []
        self.peers: list[Peer] = []

    async def start(self, text: str) -> tuple[RunningLab, Path]:
        config = self.tmp / "lab.yaml"
        config.write_text(text, encoding="utf-8")
        running = await start_lab(text, self.tmp / "data")
        self.running.append(running)
        return running, config

    async def replace_mailbox_delivery(self, running: RunningLab, script: Script) -> Peer:
        return await self.replace(running, "127.0.10.1", 475, script)

    async def replace(self, running: RunningLab, host: str, port: int, script: Script) -> Peer:
        """The lab's listener on ``host:port`` closed, the test's peer in its place."""
        await running.daemon.pause_listener(host, port)
        return self.peer(host, running.port(port), script)

    def peer(self, host: str, port: int, script: Script) -> Peer:
        peer = Peer(host, port, script)
        self.peers.append(peer)
        return peer


@pytest.fixture
async def labs(tmp_path: Path) -> Any:
    made = _Labs(tmp_path)
    yield made
    for peer in made.peers:
        peer.stop()
    for running in made.running:
        await running.daemon.stop()


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ssl.SSLContext]]:
    folder = tmp_path_factory.mktemp("peer-cert")
    leaf = make_leaf(None, "ex01.contoso.com")
    (folder / "cert.pem").write_bytes(leaf.pem)
    (folder / "key.pem").write_bytes(leaf.key_pem)
    made = {}
    for name, version in (("tls13", ssl.TLSVersion.TLSv1_3), ("tls12", ssl.TLSVersion.TLSv1_2)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = version
        ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
        made[name] = ctx
    yield made


async def _queue_in_retry(running: RunningLab, config: Path) -> dict[str, Any]:
    for _ in range(300):
        found = [q for q in await queue_json(running, config, "get") if q["Status"] == "Retry"]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("no queue in Retry")


async def _last_error(labs: _Labs, script: Script, text: str = "") -> tuple[str, str, Peer]:
    running, config = await labs.start(text or with_connectors(SLOW_RETRY, FAST))
    peer = await labs.replace_mailbox_delivery(running, script)
    await submit(running.port(587), "alice@contoso.com", "to a broken hop")
    queue = await _queue_in_retry(running, config)
    assert queue["DeliveryType"] == "SmtpDeliveryToMailbox"
    [message] = await queue_json(running, config, "messages", "--queue", queue["Identity"])
    return queue["LastError"], message["LastError"], peer


async def test_a_peer_that_drops_the_connection_after_ehlo(labs: _Labs) -> None:
    queue, message, peer = await _last_error(labs, drops_after_ehlo)
    assert peer.connections >= 1
    assert queue == LED + "421 4.4.2 Connection dropped due to SocketError" + TAIL
    assert message == queue


async def test_a_peer_whose_tls_handshake_fails(
        labs: _Labs, tls_contexts: dict[str, ssl.SSLContext]) -> None:
    # The hub's hops written to its send log (Set-TransportService's level, None by default).
    text = with_connectors(SLOW_RETRY, FAST).replace(
        'MessageRetryInterval: "00:01:00"}',
        'MessageRetryInterval: "00:01:00", IntraOrgConnectorProtocolLoggingLevel: Verbose}', 1)
    assert "IntraOrgConnectorProtocolLoggingLevel" in text
    queue, message, _ = await _last_error(labs, tls_fails(tls_contexts["tls13"]), text)
    assert queue == (LED + "421 4.2.1 Unable to connect -> TLS negotiation failed with error "
                     "AlgorithmMismatch" + TAIL)
    assert message == queue
    # The send protocol log says the same in Schannel's words (exchange.md §4.6).
    logs = labs.running[0].data / "logs" / "EX01" / "ProtocolLog" / "SmtpSend"
    log = "".join(p.read_bytes().decode("utf-8") for p in sorted(logs.iterdir()))
    assert ",*,,TLS negotiation failed with error AlgorithmMismatch\r\n" in log


async def test_a_peer_that_refuses_exchangeauth(
        labs: _Labs, tls_contexts: dict[str, ssl.SSLContext]) -> None:
    queue, message, _ = await _last_error(labs, refuses_exchangeauth(tls_contexts["tls12"]))
    assert queue == LED + "535 5.7.3 Authentication unsuccessful" + TAIL
    assert message == queue


async def test_a_peer_that_never_answers_times_out_after_the_configured_hop_timeout(
        labs: _Labs) -> None:
    text = with_connectors(SLOW_RETRY, FAST).replace(
        "  InternetSink: {Address: 127.0.10.250, Port: 25}",
        '  InternetSink: {Address: 127.0.10.250, Port: 25}\n  HopTimeout: "00:00:01"')
    assert 'HopTimeout: "00:00:01"' in text
    started = asyncio.get_running_loop().time()
    queue, message, _ = await _last_error(labs, never_answers, text)
    assert asyncio.get_running_loop().time() - started < 20  # 1 s, not the default 30 s
    assert queue == LED + "421 4.4.1 Connection timed out" + TAIL
    assert message == queue


async def test_a_peer_that_drops_the_connection_during_the_transaction(
        labs: _Labs, tls_contexts: dict[str, ssl.SSLContext]) -> None:
    running, config = await labs.start(with_connectors(SLOW_RETRY, FAST))
    await labs.replace_mailbox_delivery(running, drops_in_the_transaction(tls_contexts["tls12"]))
    await submit(running.port(587), "alice@contoso.com", "to a hop that breaks")
    for _ in range(300):
        messages = await queue_json(running, config, "messages")
        if messages and messages[0]["LastError"]:
            break
        await asyncio.sleep(0.05)
    [message] = messages
    assert message["LastError"] == LED + "421 4.4.2 Connection dropped due to SocketError" + TAIL


SMART_HOST = """
  - Name: Via Smarthost
    AddressSpaces: ["fabrikam.example"]
    SmartHosts: ["[127.0.10.71]"]
    ProtocolLoggingLevel: VerboseEXTRA
"""


async def test_a_source_server_that_drops_the_connection_after_ehlo(labs: _Labs) -> None:
    text = lab_text(SMART_HOST.replace("EXTRA", "\n    SourceTransportServers: [EX02]"),
                    extra_servers=EX02).replace(*SLOW)
    running, config = await labs.start(text)
    await labs.replace(running, "127.0.10.2", 2525, drops_after_ehlo)  # EX02's Transport
    await submit(running.port(587), "someone@fabrikam.example", "through ex02")
    queue = await _queue_in_retry(running, config)
    assert queue["DeliveryType"] == "SmtpRelayToConnectorSourceServers"
    assert queue["LastError"] == (LED + "421 4.4.2 Connection dropped due to SocketError"
                                  "};{MSG=};{FQDN=ex02.contoso.com};{IP=127.0.10.2};")


async def test_an_outbound_proxy_frontend_that_never_answers(labs: _Labs) -> None:
    text = lab_text(SMART_HOST.replace("EXTRA", "\n    FrontendProxyEnabled: true")).replace(
        *SLOW).replace("  InternetSink: {Address: 127.0.10.250, Port: 25}",
                       '  InternetSink: {Address: 127.0.10.250, Port: 25}\n  HopTimeout: "00:00:01"')
    running, config = await labs.start(text)
    await labs.replace(running, "127.0.10.1", 717, never_answers)
    await submit(running.port(587), "someone@fabrikam.example", "through 717")
    queue = await _queue_in_retry(running, config)
    assert queue["DeliveryType"] == "SmartHostConnectorDelivery"
    assert queue["LastError"] == LED + "421 4.4.1 Connection timed out" + TAIL


def starttls_fails(context: ssl.SSLContext) -> Script:
    """A remote MTA that offers STARTTLS and takes TLS 1.3 only."""
    def script(conn: socket.socket) -> None:
        conn.sendall(b"220 mx.fabrikam.example ESMTP\r\n")
        _line(conn)
        conn.sendall(b"250-mx.fabrikam.example\r\n250 STARTTLS\r\n")
        assert _line(conn).startswith(b"STARTTLS")
        conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
        with contextlib.suppress(ssl.SSLError, OSError):
            context.wrap_socket(conn, server_side=True).close()
    return script


@pytest.mark.parametrize("frontend", [False, True], ids=["direct", "via-frontend-717"])
async def test_a_remote_whose_tls_handshake_fails_on_a_require_tls_connector(
        labs: _Labs, tls_contexts: dict[str, ssl.SSLContext], frontend: bool) -> None:
    extra = "\n    RequireTLS: true" + ("\n    FrontendProxyEnabled: true" if frontend else "")
    running, config = await labs.start(lab_text(SMART_HOST.replace("EXTRA", extra))
                                       .replace(*SLOW))
    labs.peer("127.0.10.71", running.port(25), starttls_fails(tls_contexts["tls13"]))
    await submit(running.port(587), "someone@fabrikam.example", "TLS required")
    queue = await _queue_in_retry(running, config)
    # The send connector's failover sentence with the 2016 queue's text for a failed TLS
    # negotiation (exchange.md §8.5); through 717 the Front End's answer to the hub says it.
    assert queue["LastError"] == ("451 4.4.0 Outbound proxy failed: " if frontend else "") + (
        '451 4.4.0 Primary target IP address responded with: "421 4.2.1 Unable to connect." '
        "Attempted failover to alternate host, but that did not succeed. Either there are no "
        "alternate hosts, or delivery failed to all alternate hosts. The last endpoint "
        f"attempted was 127.0.10.71:{running.port(25)}")
    if not frontend:  # the connector's send log names the failure as Schannel does
        logs = running.data / "logs" / "EX01" / "ProtocolLog" / "SmtpSend"
        log = "".join(p.read_bytes().decode("utf-8") for p in sorted(logs.iterdir()))
        assert ",Via Smarthost," in log
        assert ",*,,TLS negotiation failed with error AlgorithmMismatch\r\n" in log


async def test_a_front_end_whose_hub_drops_the_connection_logs_exchanges_words(
        labs: _Labs) -> None:
    connectors = FAST.replace("{Name: Client Frontend EX01, Server: EX01,",
                              "{Name: Client Frontend EX01, Server: EX01, "
                              "ProtocolLoggingLevel: Verbose,")
    assert connectors != FAST
    running, _ = await labs.start(with_connectors(SLOW_RETRY, connectors))
    await labs.replace(running, "127.0.10.1", 465, drops_after_ehlo)  # Client Proxy EX01
    with pytest.raises(Exception) as refused:
        await submit(running.port(587), "alice@contoso.com", "to a hub that drops")
    assert "PRX4" in str(refused.value)
    assert (f",*,,Failed to proxy message to 127.0.10.1:{running.port(465)}: 421 4.4.2 "
            "Connection dropped due to SocketError\r\n") in running.protocol_log()


def refuses_direct_trust(context: ssl.SSLContext) -> Script:
    """An Edge's port 25 that does not take the Mailbox server's certificate: a good handshake,
    then the EHLO after it answered ``454 4.7.0`` (exchange.md §7.6)."""
    def script(conn: socket.socket) -> None:
        _to_tls(conn)
        tls = context.wrap_socket(conn, server_side=True)
        assert _line(tls).startswith(b"EHLO")
        tls.sendall(b"454 4.7.0 Temporary authentication failure\r\n")
        _line(tls)
        tls.close()
    return script


def after_handshake(context: ssl.SSLContext, lines: list[bytes]) -> Script:
    """X-ANONYMOUSTLS with ``context``'s certificate, then record what the client sends."""
    def script(conn: socket.socket) -> None:
        _to_tls(conn)
        tls = context.wrap_socket(conn, server_side=True)
        while line := _line(tls):
            lines.append(line)
            tls.sendall(b"250 2.0.0 OK\r\n")
        tls.close()
    return script


def edge_context(edge_lab: EdgeLab) -> ssl.SSLContext:  # noqa: F811
    """A TLS server presenting EDGE01's own certificate (the lab's, under DATA/pki)."""
    servers = edge_lab.data / "pki" / "servers"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(servers / "EDGE01.crt", servers / "EDGE01.key")
    return ctx


async def _edge_queue_in_retry(edge_lab: EdgeLab, script: Script,  # noqa: F811
                               subject: str) -> tuple[dict[str, Any], Peer]:
    """EDGE01 replaced by a peer running ``script``; alice sends to the Internet; the Mailbox
    server's queue to the Edge once in Retry."""
    await edge_lab.stop("EDGE01")
    peer = Peer("127.0.10.10", edge_lab.port(25), script)
    try:
        await asyncio.to_thread(send, "127.0.10.1", edge_lab.port(587), ALICE[0],
                                "later@fabrikam.example", subject, login=ALICE)
        for _ in range(200):
            found = [q for q in await edge_queue(edge_lab, "get")
                     if q["DeliveryType"] == "SmtpRelayWithinAdSiteToEdge"]
            if found and found[0]["Status"] == "Retry":
                return found[0], peer
            await asyncio.sleep(0.1)
        raise AssertionError("the Edge's queue never reached Retry")
    finally:
        peer.stop()


async def test_an_edge_that_refuses_direct_trust(edge_lab: EdgeLab) -> None:  # noqa: F811
    queue, _ = await _edge_queue_in_retry(
        edge_lab, refuses_direct_trust(edge_context(edge_lab)), "to an edge that refuses")
    assert queue["LastError"] == (
        LED + "454 4.7.0 Temporary authentication failure};{MSG=};{FQDN=edge01.contoso.com};"
        "{IP=127.0.10.10};")


async def test_a_direct_trust_hop_takes_only_the_edges_certificate(
        edge_lab: EdgeLab, tls_contexts: dict[str, ssl.SSLContext]) -> None:  # noqa: F811
    """Direct Trust is mutual (exchange.md §7.6): a listener at the Edge's address that
    presents another certificate (one for ex01.contoso.com, not from the subscription) gets no
    EHLO and no message; the queue says the Exchange authentication failed."""
    lines: list[bytes] = []
    queue, peer = await _edge_queue_in_retry(
        edge_lab, after_handshake(tls_contexts["tls12"], lines), "to an impostor")
    assert peer.connections >= 1
    assert lines == []
    assert queue["LastError"] == (
        LED + "451 5.7.3 Cannot achieve Exchange Server authentication};{MSG=};"
        "{FQDN=edge01.contoso.com};{IP=127.0.10.10};")


def drops_at_data(conn: socket.socket) -> None:
    """A remote MTA that takes MAIL and RCPT and closes the connection at DATA."""
    conn.sendall(b"220 mx.fabrikam.example ESMTP\r\n")
    _line(conn)
    conn.sendall(b"250-mx.fabrikam.example\r\n250 8BITMIME\r\n")
    for reply in (b"250 2.1.0 Ok\r\n", b"250 2.1.5 Ok\r\n"):
        _line(conn)
        conn.sendall(reply)
    assert _line(conn).upper().startswith(b"DATA")


async def test_a_remote_that_drops_the_connection_behind_the_outbound_proxy_frontend(
        labs: _Labs) -> None:
    running, config = await labs.start(lab_text(SMART_HOST.replace(
        "EXTRA", "\n    FrontendProxyEnabled: true")).replace(*SLOW))
    labs.peer("127.0.10.71", running.port(25), drops_at_data)
    await submit(running.port(587), "someone@fabrikam.example", "dropped behind 717")
    queue = await _queue_in_retry(running, config)
    # The Front End's answer to the hub: its send connector client's failover sentence.
    assert queue["LastError"] == (
        '451 4.4.0 Outbound proxy failed: 451 4.4.0 Primary target IP address responded with: '
        '"421 4.4.2 Connection dropped due to SocketError." Attempted failover to alternate '
        "host, but that did not succeed. Either there are no alternate hosts, or delivery "
        "failed to all alternate hosts. The last endpoint attempted was "
        f"127.0.10.71:{running.port(25)}")


def drops_at_xproxyto(context: ssl.SSLContext) -> Script:
    """An Outbound Proxy Frontend whose hop session is set up (TLS, EXCHANGEAUTH) and that
    closes the connection when XPROXYTO arrives: the destination's trouble, as a Mailbox
    Transport Delivery that drops at XSESSIONPARAMS."""
    def script(conn: socket.socket) -> None:
        _to_tls(conn)
        tls = context.wrap_socket(conn, server_side=True)
        _line(tls)
        tls.sendall(EHLO_REPLY.replace(b"250-X-ANONYMOUSTLS\r\n",
                                       b"250-X-EXPS EXCHANGEAUTH\r\n"))
        _line(tls)
        tls.sendall(b"235 <authentication information>\r\n")
        assert _line(tls).startswith(b"XPROXYTO")
        tls.close()
    return script


async def test_an_outbound_proxy_frontend_that_drops_the_connection_at_xproxyto(
        labs: _Labs, tls_contexts: dict[str, ssl.SSLContext]) -> None:
    running, config = await labs.start(lab_text(SMART_HOST.replace(
        "EXTRA", "\n    FrontendProxyEnabled: true")).replace(*SLOW))
    peer = await labs.replace(running, "127.0.10.1", 717, drops_at_xproxyto(tls_contexts["tls12"]))
    await submit(running.port(587), "someone@fabrikam.example", "dropped at XPROXYTO")
    queue = await _queue_in_retry(running, config)
    assert peer.connections >= 1
    assert queue["DeliveryType"] == "SmartHostConnectorDelivery"
    assert queue["LastError"] == LED + "421 4.4.2 Connection dropped due to SocketError" + TAIL


def accepts_without_smtputf8(conn: socket.socket) -> None:
    """A remote MTA that offers no SMTPUTF8 and takes whatever it is sent."""
    conn.sendall(b"220 mx.fabrikam.example ESMTP\r\n")
    _line(conn)
    conn.sendall(b"250-mx.fabrikam.example\r\n250 8BITMIME\r\n")
    while (line := _line(conn).upper()) and not line.startswith(b"QUIT"):
        if line.startswith(b"DATA"):
            conn.sendall(b"354 go ahead\r\n")
            while _line(conn) not in (b".\r\n", b""):
                pass
        conn.sendall(b"250 2.0.0 Ok\r\n")
    conn.sendall(b"221 2.0.0 Bye\r\n")


@pytest.mark.parametrize("frontend", [False, True], ids=["direct", "via-frontend-717"])
async def test_a_utf8_address_to_a_remote_without_smtputf8_gets_an_ndr(
        labs: _Labs, frontend: bool) -> None:
    """The SMTP client cannot send the address (the remote offers no SMTPUTF8): an NDR at
    once, through the Front End as directly, not a queue in Retry until the message expires."""
    extra = "\n    FrontendProxyEnabled: true" if frontend else ""
    running, config = await labs.start(lab_text(SMART_HOST.replace("EXTRA", extra))
                                       .replace(*SLOW))
    labs.peer("127.0.10.71", running.port(25), accepts_without_smtputf8)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    smtp = aiosmtplib.SMTP(hostname="127.0.10.1", port=running.port(587), start_tls=False,
                           timeout=15)
    await smtp.connect()
    await smtp.starttls(tls_context=ctx)
    await smtp.login("alice@contoso.com", "P@ssw0rd!")
    errors, _ = await smtp.sendmail(
        "alice@contoso.com", ["josé@fabrikam.example"],
        b"From: alice@contoso.com\r\nSubject: to jose\r\n\r\nhola\r\n",
        mail_options=["SMTPUTF8"])
    await smtp.quit()
    assert errors == {}
    await running.wait_for(lambda: len(running.mailbox("alice@contoso.com")) == 1, timeout=15)
    ndr = running.mailbox("alice@contoso.com")[0].decode("utf-8", "replace")
    assert "550 5.1.3 Invalid address" in ndr
    assert "ValueError" not in ndr and "SMTPUTF8" not in ndr.split("message/rfc822")[0]
    assert await queue_json(running, config, "messages") == []
