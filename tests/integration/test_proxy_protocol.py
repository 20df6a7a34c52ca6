"""The PROXY protocol on EX01's port 25 (configs/examples/proxy-protocol.yaml), end to end.

The trusted proxy is 127.0.10.90. Headers are written by the test on a raw socket and handed
to smtplib (a client that never heard of the PROXY protocol), and sent by HAProxy itself
(``send-proxy`` and ``send-proxy-v2``). The clients they name are 203.0.113.0/24 addresses
(reachable only through the header) and 127.0.30.0/24, the example's relay range.
"""

from __future__ import annotations

import asyncio
import email
import ipaddress
import logging
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchsim.logs.repeats import record_key
from exchsim.smtp.proxyheader import V2_SIGNATURE
from tests.integration.conftest import ROOT, RawClient, RunningLab, start_lab, swaks

HOST = "127.0.10.1"
PROXY = "127.0.10.90"
EXAMPLE = (ROOT / "configs" / "examples" / "proxy-protocol.yaml").read_text(encoding="utf-8")
TEXT = (EXAMPLE
        .replace('HeaderTimeout: "00:00:05"', 'HeaderTimeout: "00:00:00.5"')
        .replace("  InternetSink: {Address: 127.0.10.250, Port: 25}",
                 '  InternetSink: {Address: 127.0.10.250, Port: 25}\n  RetryInterval: "00:00:01"\n'
                 "  ComposeGateway: 127.0.10.99")
        .replace("ProtocolLoggingLevel: Verbose}",
                 'ProtocolLoggingLevel: Verbose, TarpitInterval: "00:00:00"}'))
LOGGER = "exchsim.smtp.proxyread"


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[RunningLab]:
    running = await start_lab(TEXT, tmp_path / "data", "proxy-protocol.yaml")
    yield running
    await running.daemon.stop()


def v1(src: str, sport: int, dport: int = 25) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    dst = "2001:db8::1" if family == "TCP6" else HOST
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str, sport: int, tlvs: bytes = b"", command: int = 1) -> bytes:
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(HOST if s.version == 4 else "2001:db8::1")
    body = s.packed + d.packed + sport.to_bytes(2, "big") + (25).to_bytes(2, "big") + tlvs
    fam = 0x11 if s.version == 4 else 0x21
    return V2_SIGNATURE + bytes([0x20 | command, fam]) + len(body).to_bytes(2, "big") + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


class ProxiedSMTP(smtplib.SMTP):
    """smtplib on a socket that has already sent a PROXY header (as a load balancer does)."""

    def __init__(self, header: bytes, source: str, host: str, port: int) -> None:
        self._header, self._source = header, source
        super().__init__(host, port, timeout=15)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, (self._source, 0))
        sock.sendall(self._header)
        return sock


def smtp_session(header: bytes, port: int, rcpts: list[str], body: str,
                 starttls: bool = False, source: str = PROXY) -> tuple[str, dict[str, object]]:
    with ProxiedSMTP(header, source, HOST, port) as client:
        if starttls:
            client.ehlo("app.example")
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            client.starttls(context=context)
        code, text = client.ehlo("app.example")
        assert code == 250
        refused = client.sendmail("app@fabrikam.example", rcpts, body)
        return text.decode().splitlines()[0], refused  # type: ignore[return-value]


async def refused(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection without sending a byte (an EOF, or a reset when it
    closed with the client's bytes unread)."""
    try:
        return await asyncio.wait_for(reader.read(), 5.0) == b""
    except ConnectionResetError:
        return True


def log_lines(lab: RunningLab, connector: str) -> list[list[str]]:
    return [line.split(",") for line in lab.protocol_log().splitlines()
            if not line.startswith("#") and f"EX01\\{connector}" in line]


def tracking(lab: RunningLab) -> str:
    folder = lab.data / "logs" / "EX01" / "MessageTracking"
    return "".join(p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()))


async def test_v1_header_is_the_client_for_connector_logs_and_headers(lab: RunningLab) -> None:
    # 127.0.30.77 in the header: the relay connector of 127.0.30.0/24, although the TCP peer
    # is the proxy 127.0.10.90 (which Default Frontend would take, and refuse to relay).
    hello, refused = await asyncio.to_thread(
        smtp_session, v1("127.0.30.77", 40001), lab.port(25),
        ["user@fabrikam.example", "bob@contoso.com"], "Subject: via proxy\r\n\r\nhi\r\n")
    assert hello == "ex01.contoso.com Hello [127.0.30.77]"
    assert refused == {}
    await lab.wait_for(lambda: lab.internet("user@fabrikam.example")
                       and lab.mailbox("bob@contoso.com"))
    delivered = email.message_from_bytes(lab.mailbox("bob@contoso.com")[0])
    received = " ".join(str(v) for v in delivered.get_all("Received", []))
    assert "from app.example (127.0.30.77) by ex01.contoso.com (127.0.10.1)" in " ".join(
        received.split())
    assert PROXY not in received
    lines = log_lines(lab, "Relay behind HAProxy EX01")
    assert lines and {line[5] for line in lines} == {"127.0.30.77:40001"}
    assert {line[4] for line in lines} == {f"{HOST}:{lab.port(25)}"}  # the real listener
    assert ",127.0.30.77," in tracking(lab)  # original-client-ip of the hub's RECEIVE


async def test_v2_header_with_tlvs_and_an_ipv6_client(lab: RunningLab) -> None:
    tlvs = tlv(0x01, b"smtp") + tlv(0x05, b"conn-42") + tlv(0x04, b"\x00\x00\x00")
    client = await RawClient.connect(HOST, lab.port(25), PROXY)
    await client.send(v2("2001:db8::77", 5555, tlvs))
    assert (await client.reply()).startswith("220 ")
    assert (await client.cmd("EHLO app.example")).startswith(
        "250-ex01.contoso.com Hello [2001:db8::77]")
    await client.cmd("MAIL FROM:<app@fabrikam.example>")
    # Default Frontend (the relay connector's range is IPv4): no relay for an anonymous client.
    assert await client.cmd("RCPT TO:<user@fabrikam.example>") == (
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain")
    await client.cmd("QUIT")
    client.close()
    hello, refused = await asyncio.to_thread(
        smtp_session, v2("127.0.30.78", 5556, tlvs), lab.port(25), ["user@fabrikam.example"],
        "Subject: v2\r\n\r\nhi\r\n")
    assert hello == "ex01.contoso.com Hello [127.0.30.78]" and refused == {}
    remotes = {line[5] for line in log_lines(lab, "Default Frontend EX01")}
    assert "[2001:db8::77]:5555" in remotes
    assert {line[5] for line in log_lines(lab, "Relay behind HAProxy EX01")} == {
        "127.0.30.78:5556"}


async def test_v2_local_and_v1_unknown_keep_the_proxy_as_client(lab: RunningLab) -> None:
    for header in (V2_SIGNATURE + b"\x20\x00\x00\x00", b"PROXY UNKNOWN\r\n"):
        client = await RawClient.connect(HOST, lab.port(25), PROXY)
        await client.send(header)
        await client.reply()
        assert (await client.cmd("EHLO lb.example")).startswith(
            f"250-ex01.contoso.com Hello [{PROXY}]")
        client.close()


async def test_smtp_bytes_right_after_the_header_reach_the_session(lab: RunningLab) -> None:
    # A proxy forwards whatever the client sent with the header (one segment).
    client = await RawClient.connect(HOST, lab.port(25), PROXY)
    await client.send(v1("203.0.113.9", 7) + b"EHLO early.example\r\n")
    assert (await client.reply()).startswith("220 ")
    assert (await client.reply()).startswith("250-ex01.contoso.com Hello [203.0.113.9]")
    client.close()


async def test_starttls_and_anonymous_tls_after_the_header(lab: RunningLab) -> None:
    hello, refused = await asyncio.to_thread(
        smtp_session, v1("127.0.30.79", 40002), lab.port(25), ["alice@contoso.com"],
        "Subject: tls\r\n\r\nhi\r\n", starttls=True)
    assert hello == "ex01.contoso.com Hello [127.0.30.79]" and refused == {}
    await lab.wait_for(lambda: lab.mailbox("alice@contoso.com"))
    received = " ".join(email.message_from_bytes(lab.mailbox("alice@contoso.com")[0])
                        .get_all("Received", []))
    assert "(127.0.30.79) by ex01.contoso.com" in " ".join(received.split())
    assert "with Microsoft SMTP Server (version=TLS1_2" in " ".join(received.split())
    client = await RawClient.connect(HOST, lab.port(25), PROXY)
    await client.send(v2("203.0.113.80", 80))
    await client.reply()
    await client.cmd("EHLO ex02.contoso.com")
    assert await client.cmd("X-ANONYMOUSTLS") == "220 2.0.0 SMTP server ready"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    await client.writer.start_tls(context)
    assert (await client.cmd("EHLO ex02.contoso.com")).startswith(
        "250-ex01.contoso.com Hello [203.0.113.80]")
    client.close()


async def test_untrusted_peers_are_refused_without_a_greeting(
        lab: RunningLab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    client = await RawClient.connect(HOST, lab.port(25), "127.0.10.91")
    await client.send(v1("127.0.30.77", 1))
    assert await refused(client.reader)  # not a byte: no greeting
    client.close()
    rc, out = await swaks("--server", f"{HOST}:{lab.port(25)}", "--local-interface",
                          "127.0.30.77", "--quit-after", "EHLO")
    assert rc != 0 and "<-  220" not in out, out
    refusals = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(refusals) == 2, refusals
    assert "refused a connection from 127.0.10.91:" in refusals[0]
    assert "not in ExchsimProxyProtocol's TrustedProxies" in refusals[0]
    assert log_lines(lab, "Relay behind HAProxy EX01") == []  # no session was started
    # The other ports take direct clients as ever.
    rc, out = await swaks("--server", f"{HOST}:{lab.port(587)}", "--quit-after", "EHLO")
    assert rc == 0 and "<-  220" in out, out


async def test_trusted_peer_without_a_header_is_refused(
        lab: RunningLab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        await asyncio.to_thread(smtplib.SMTP, HOST, lab.port(25), timeout=10,
                                source_address=(PROXY, 0))
    assert 0.4 < loop.time() - start < 3.0  # HeaderTimeout, 0.5 s
    assert any("no complete PROXY header within 0.5 s (0 bytes came)" in r.getMessage()
               for r in caplog.records)


BAD = {
    "malformed v1": b"PROXY TCP4 203.0.113.7 127.0.10.1 01 25\r\n",
    "lone LF": b"PROXY TCP4 203.0.113.7 127.0.10.1 1 25\n",
    "oversized v1": b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n",
    "oversized v2": V2_SIGNATURE + b"\x21\x11\xea\x60" + b"\x00" * 3000,
    "bad TLV": v2("203.0.113.7", 1, b"\x05\x00\x40abc"),
    "plain SMTP": b"EHLO client.example\r\n",
    "slow": b"PROXY TCP4 203.0.113.7 ",  # then nothing: HeaderTimeout
    "cut short": V2_SIGNATURE + b"\x21\x11\x00\x0c\x01\x02",  # then the proxy closes
}


def server_sockets(port: int) -> list[str]:
    """Sockets of the listener's port other than the listener itself and TIME-WAIT ones."""
    out = subprocess.run(["ss", "-tanH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines()
            if line.split()[0] not in ("LISTEN", "TIME-WAIT")]


async def test_bad_headers_are_closed_without_a_greeting_or_a_leak(
        lab: RunningLab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    assert shutil.which("ss"), "ss is required: apt-get install -y iproute2"
    rounds = 10

    async def one(name: str, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(HOST, lab.port(25),
                                                       local_addr=(PROXY, 0))
        writer.write(data)
        if name == "cut short":
            writer.write_eof()
        try:
            return await refused(reader)
        finally:
            writer.close()

    results = await asyncio.gather(*(one(name, data) for name, data in BAD.items()
                                     for _ in range(rounds)))
    assert all(results)  # not one byte of greeting
    node = lab.daemon.nodes["EX01"]
    await lab.wait_for(lambda: not node.sessions and not server_sockets(lab.port(25)))
    records = [r for r in caplog.records if r.name == LOGGER]
    refusals = [r.getMessage() for r in records]
    assert len(refusals) == len(BAD) * rounds  # one line per connection
    # The repeat filter of exchsim lab|serve counts each kind apart: malformed, slow, cut short.
    assert len({record_key(r) for r in records}) == 3
    assert max(len(m) for m in refusals) < 400  # bounded, whatever was sent
    assert any("malformed PROXY header" in m and "0x0a" in m for m in refusals)
    assert sum("the connection ended after 18 bytes, before the PROXY header did" in m
               for m in refusals) == rounds
    assert log_lines(lab, "Default Frontend EX01") == []


async def test_compose_gateway_warning_is_rate_limited(
        lab: RunningLab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    for source in ("127.0.10.99", "127.0.10.99", "127.0.10.98", "127.0.10.99"):
        client = await RawClient.connect(HOST, lab.port(587), source)
        assert (await client.reply()).startswith("220 ")
        client.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1, warnings
    assert "1 session(s) from 127.0.10.99, the compose network's gateway" in warnings[0]


HAPROXY_CFG = """
global
  maxconn 50
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend v1
  bind 127.0.10.95:{v1}
  default_backend ex01_v1
frontend v2
  bind 127.0.10.95:{v2}
  default_backend ex01_v2
backend ex01_v1
  server ex01 127.0.10.1:{port} send-proxy source 127.0.10.90
backend ex01_v2
  server ex01 127.0.10.1:{port} send-proxy-v2 source 127.0.10.90
"""


async def test_haproxy_in_front(lab: RunningLab, tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    assert haproxy, "haproxy is required: apt-get install -y haproxy"
    cfg = tmp_path / "haproxy.cfg"
    ports = {"v1": lab.port(26), "v2": lab.port(27)}
    cfg.write_text(HAPROXY_CFG.format(port=lab.port(25), **ports), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        haproxy, "-db", "-f", str(cfg), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        for i, (version, port) in enumerate(ports.items()):
            source = f"127.0.30.{7 + i}"
            for _ in range(50):  # until HAProxy listens
                rc, out = await swaks("--server", f"127.0.10.95:{port}", "--local-interface",
                                      source, "--from", "app@fabrikam.example",
                                      "--to", f"{version}@fabrikam.example")
                if "<-  220" in out:
                    break
                await asyncio.sleep(0.1)
            assert rc == 0, out
            assert f"Hello [{source}]" in out, out
            assert "<-  250 2.6.0" in out, out
            await lab.wait_for(lambda v=version: lab.internet(f"{v}@fabrikam.example"))
        remotes = {line[5].rsplit(":", 1)[0]
                   for line in log_lines(lab, "Relay behind HAProxy EX01")}
        assert remotes == {"127.0.30.7", "127.0.30.8"}
    finally:
        proc.terminate()
        await proc.wait()


async def test_connection_limits_count_the_proxied_source(tmp_path: Path) -> None:
    # MaxInboundConnectionPerSource 1 on the relay connector: one session per client behind
    # the proxy, although every connection comes from the proxy's one address.
    text = TEXT.replace("RemoteIPRanges: [\"127.0.30.0/24\"],",
                        "RemoteIPRanges: [\"127.0.30.0/24\"], MaxInboundConnectionPerSource: 1,")
    assert text != TEXT
    lab = await start_lab(text, tmp_path / "data", "proxy-protocol.yaml")
    clients: list[RawClient] = []
    try:
        banners = []
        for source in ("127.0.30.1", "127.0.30.1", "127.0.30.2"):
            client = await RawClient.connect(HOST, lab.port(25), PROXY)
            clients.append(client)
            await client.send(v1(source, 1000 + len(clients)))
            banners.append(await client.reply())
        assert banners[0].startswith("220 ") and banners[2].startswith("220 ")
        assert banners[1].startswith("421 4.3.2 "), banners[1]
    finally:
        for client in clients:
            client.close()
        await lab.daemon.stop()
