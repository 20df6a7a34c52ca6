"""The lab's protocol logs read with the rules of a public parser of Exchange's logs.

A mix of sessions from real clients (swaks, a raw socket) goes through the running lab; the
receive log is then read as the PowerShell module ExchangeLogs reads it (tests/exchangelogs.py,
exchange.md §12.7), and every session, message and TLS event must be found there: both the
``+`` and ``-`` lines, the HELO name, MAIL FROM, RCPT TO, the queued id of ``250 2.6.0``, the
TLS protocol and algorithms, the authenticated user and the tarpit's duration.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import re
import socket
import struct
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests import exchangelogs
from tests.integration.conftest import FAST, FAST_LAB_YAML, start_lab, swaks, with_connectors

HOST = "127.0.10.1"
# The test connectors, with a 1 s tarpit on Default Frontend and Client Frontend logging.
CONNECTORS = FAST.replace(
    '{Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:00"',
    '{Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:01"',
).replace(
    '{Name: Client Frontend EX01, Server: EX01,',
    '{Name: Client Frontend EX01, Server: EX01, ProtocolLoggingLevel: Verbose,',
)
# What OpenSSL calls the parts of a TLS 1.2 suite, and what Schannel's log names them
# (exchange.md §4.6): protocol, bulk cipher, MAC hash, key exchange.
SCHANNEL = {"TLSv1.2": "SP_PROT_TLS1_2_SERVER", "AES256": "CALG_AES_256",
            "AES128": "CALG_AES_128", "SHA384": "CALG_SHA_384", "SHA256": "CALG_SHA_256",
            "ECDHE": "CALG_ECDH_EPHEM", "DHE": "CALG_DH_EPHEM"}


def _drop(port: int, helo: str, *, reset: bool) -> None:
    """A client that leaves in the middle of a transaction: FIN, or RST with ``reset``."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"220 ")
        sock.sendall(f"EHLO {helo}\r\n".encode())
        while (line := stream.readline())[3:4] == b"-":
            pass
        assert line.startswith(b"250 ")
        sock.sendall(b"MAIL FROM:<gone@fabrikam.example>\r\n")
        assert stream.readline().startswith(b"250 2.1.0")
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _swaks_with_tls_info(*args: str) -> tuple[int, str]:
    """swaks with its informational lines (``TLS connection established: ...``)."""
    proc = await asyncio.create_subprocess_exec(
        "swaks", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "LC_ALL": "C"})
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode("utf-8", "replace")


def _ended(log: str, connector: str) -> bool:
    """Every session of the connector has its ``-`` line."""
    events = [(f[2], f[6]) for line in log.splitlines()
              if f",EX01\\{connector}," in line and len(f := line.split(",")) > 6]
    started = {sid for sid, event in events if event == "+"}
    return bool(started) and started == {sid for sid, event in events if event == "-"}


def _suite(transcript: str) -> tuple[str, str, str, str]:
    """The Schannel names of what swaks reports: ``TLS started with cipher TLSv1.2:...``."""
    m = re.search(r"TLS started with cipher (TLSv[\d.]+):(\S+?):\d+", transcript)
    assert m, transcript
    parts = m[2].split("-")
    kex, bulk, mac = parts[0], parts[-3], parts[-1]
    return SCHANNEL[m[1]], SCHANNEL[bulk], SCHANNEL[mac], SCHANNEL[kex]


def test_the_connectors_are_changed() -> None:
    assert CONNECTORS.count('TarpitInterval: "00:00:01"') == 1
    assert CONNECTORS.count("ProtocolLoggingLevel: Verbose") == 4


async def test_a_public_exchange_log_parser_finds_every_session_message_and_tls_event(
    tmp_path: Path,
) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, CONNECTORS), tmp_path / "data")
    try:
        common = ("--server", HOST, "--from", "x@fabrikam.example")
        code, anonymous = await swaks(
            *common, "--port", str(lab.port(25)), "--helo", "client.example.org",
            "--to", "alice@contoso.com", "--header", "Message-Id: <anon.1@fabrikam.example>")
        assert code == 0, anonymous
        code, starttls = await _swaks_with_tls_info(
            *common, "--port", str(lab.port(25)), "--helo", "tls.example.org", "--tls",
            "--to", "bob@contoso.com", "--header", "Message-Id: <tls.2@fabrikam.example>")
        assert code == 0, starttls
        code, submitted = await swaks(
            "--server", HOST, "--port", str(lab.port(587)), "--helo", "laptop.example.org",
            "--tls", "--auth", "LOGIN", "--auth-user", "alice@contoso.com",
            "--auth-password", "P@ssw0rd!", "--from", "alice@contoso.com",
            "--to", "bob@contoso.com", "--header", "Message-Id: <sub.3@contoso.com>")
        assert code == 0, submitted
        code, refused = await swaks(
            *common, "--port", str(lab.port(25)), "--helo", "relay.example.org",
            "--to", "user@fabrikam.example", "--quit-after", "RCPT")
        assert "550 5.7.54" in refused, refused
        await asyncio.to_thread(_drop, lab.port(25), "fin.example.org", reset=False)
        await asyncio.to_thread(_drop, lab.port(25), "rst.example.org", reset=True)
        await lab.wait_for(lambda: len(lab.mailbox("bob@contoso.com")) == 2
                           and len(lab.mailbox("alice@contoso.com")) == 1)
        await lab.wait_for(lambda: _ended(lab.protocol_log(), "Default Frontend EX01"))
    finally:
        await lab.daemon.stop()

    folder = lab.data / "logs" / "EX01" / "ProtocolLog" / "SmtpReceive"
    found, fragments = exchangelogs.sessions(folder)
    # Every session of the log is found, whole: its + and - lines are there.
    logged = {line.split(",")[2] for line in lab.protocol_log().splitlines()
              if line[:1].isdigit()}
    assert fragments == []
    assert {s.session_id for s in found} == logged
    assert all(s.server_name == "EX01" and s.server_name_helo == "ex01.contoso.com"
               for s in found)

    def client_session(helo: str) -> exchangelogs.Session:
        [session] = [s for s in found if s.client_name_helo == helo]
        return session

    def hub_session(message_id: str) -> exchangelogs.Session:
        [session] = [s for s in found if s.smtp_id == message_id
                     and s.connector_name in ("Default EX01", "Client Proxy EX01")]
        return session

    certificate = x509.load_pem_x509_certificate(
        (lab.data / "pki" / "servers" / "EX01.crt").read_bytes())
    thumbprint = hashlib.sha1(certificate.public_bytes(Encoding.DER)).hexdigest().upper()

    # Anonymous mail on 25, proxied to the hub.
    anon = client_session("client.example.org")
    assert anon.connector_name == "Default Frontend EX01"
    assert (anon.mail_from, anon.rcpt_to) == ("x@fabrikam.example", "alice@contoso.com")
    assert anon.smtp_id == "anon.1@fabrikam.example" and int(anon.internal_id) > 0
    assert anon.mail_size > 0 and "SIZE 37748736" in anon.server_options
    assert not anon.tls_enabled and not anon.authentication_enabled and not anon.tarpit_detect
    assert anon.final_status == "OK"  # QUIT: the server closed (Local)
    assert anon.finalize_message == "221 2.0.0 Service closing transmission channel"

    # STARTTLS on 25: the TLS event as the client negotiated it.
    tls = client_session("tls.example.org")
    assert (tls.mail_from, tls.rcpt_to, tls.smtp_id) == (
        "x@fabrikam.example", "bob@contoso.com", "tls.2@fabrikam.example")
    assert tls.tls_enabled
    assert (tls.tls_protocol, tls.tls_algorithm_encryption, tls.tls_algorithm_mac_hash,
            tls.tls_algorithm_key_exchange) == _suite(starttls)
    assert tls.tls_certificate_server is not None
    assert tls.tls_certificate_server.thumbprint == thumbprint
    serial = f"{certificate.serial_number:X}"
    assert tls.tls_certificate_server.serial == serial.zfill(len(serial) + len(serial) % 2)
    assert tls.tls_certificate_server.subject == "CN=EX01"
    assert (tls.tls_domain_capabilities, tls.tls_status) == ("None", "NoRemoteCertificate")

    # AUTH LOGIN on 587 after STARTTLS, proxied with XPROXY.
    sub = client_session("laptop.example.org")
    assert sub.connector_name == "Client Frontend EX01"
    assert sub.authentication_enabled and sub.authentication_type == "LOGIN"
    assert sub.authentication_user == ("alice@contoso.com",)
    assert sub.authentication_message == "235 2.7.0 Authentication successful"
    assert sub.tls_enabled and sub.tls_protocol == "SP_PROT_TLS1_2_SERVER"
    assert (sub.mail_from, sub.rcpt_to, sub.smtp_id) == (
        "alice@contoso.com", "bob@contoso.com", "sub.3@contoso.com")

    # The tarpitted refusal: the tarpit is found with its duration.
    relay = client_session("relay.example.org")
    assert relay.tarpit_detect and relay.tarpit_duration == datetime.timedelta(seconds=1)
    assert relay.rcpt_to == "user@fabrikam.example" and relay.smtp_id == ""
    assert relay.final_status == "OK"

    # Sessions that dropped without QUIT still end with their - line.
    assert client_session("fin.example.org").final_status == "Remote"
    assert client_session("rst.example.org").final_status == "Remote(ConnectionReset)"
    assert client_session("fin.example.org").mail_from == "gone@fabrikam.example"

    # The hub's side of each proxied message: the Front End's hop, found as a session of its
    # own with the same queued id, over X-ANONYMOUSTLS, with the proxy lines.
    for message_id, client in (("anon.1@fabrikam.example", anon),
                               ("tls.2@fabrikam.example", tls),
                               ("sub.3@contoso.com", sub)):
        hop = hub_session(message_id)
        assert hop.client_name_helo == "ex01.contoso.com"
        assert hop.mail_from == client.mail_from and hop.rcpt_to == client.rcpt_to
        assert hop.internal_id == client.internal_id
        assert hop.tls_enabled and hop.tls_certificate_server is not None
        assert hop.tls_certificate_server.thumbprint == thumbprint
        assert hop.final_status == "Remote"  # the Front End closed the hop
        assert (f"receiving message with InternetMessageId <{message_id}>"
                in hop.log_text), hop.log_text
    assert "> 250 XProxyFrom accepted\n" in hub_session("anon.1@fabrikam.example").log_text
    assert "> 250 XProxy accepted and authenticated\n" in hub_session(
        "sub.3@contoso.com").log_text

    # The lines the parser does not read but Exchange writes (exchange.md §6.1, §12.7).
    for group in exchangelogs.read_folder(folder):
        records = group.records
        started = records[0]["date-time"]
        assert records[0]["event"] == "+" and records[-1]["event"] == "-"
        numbers = [r["data"] for r in records if r["context"] == "receiving message"]
        assert numbers == [f"{group.session_id};{started};{n}"
                           for n in range(1, len(numbers) + 1)]
    for session in (anon, tls, sub):
        assert re.search(r"\(context: Proxy destination\(s\) obtained from OnProxyInboundMessage "
                         r"event\. Correlation Id:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
                         r"[0-9a-f]{4}-[0-9a-f]{12}\)\n> 250 2\.6\.0 ", session.log_text)
