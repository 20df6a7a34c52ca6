"""The send protocol log of a running lab (exchange.md §6.1): every hop a message makes.

Alice submits on 587 to a mailbox of the organization and to the internet; the message goes
587 -> Front End -> hub (465), hub -> Mailbox Transport Delivery (475) and hub -> the internet
sink. Each hop's client session must be in ``ProtocolLog/SmtpSend`` and read, with the rules of
the public parser ExchangeLogs (tests/exchangelogs.py), as a whole session carrying the message's
InternetMessageId; the Front End's hop must be the very connection the hub's receive log shows.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import re
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from exchsim.config.enums import ProtocolLoggingLevel
from exchsim.logs.protocol import ProtocolLog
from exchsim.logs.sendlog import SendProtocolLog
from exchsim.tls.issued import issue_certificate
from exchsim.transport.smtplog import watch
from tests import exchangelogs
from tests.integration import sendlab
from tests.integration.conftest import FAST, FAST_LAB_YAML, RunningLab, start_lab, with_connectors

SERVER = '{Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, Version: "15.2"}'
HOST = "127.0.10.1"
PASSWORD = "P@ssw0rd!"
INTRA = "Intra-Organization SMTP Send Connector"
TO_INTERNET = '    SmartHosts: ["[127.0.10.250]"]\n    DNSRoutingEnabled: false\n    Port: 25\n'


def _config(fields: str = "", sink_logging: str = "None") -> str:
    """The fast lab, with ``fields`` on EX01 and its send connector to the internet sink
    (``To Internet``, configs/single-server.yaml) at ProtocolLoggingLevel ``sink_logging``."""
    assert SERVER in FAST_LAB_YAML and TO_INTERNET in FAST_LAB_YAML
    server = SERVER if not fields else SERVER[:-1] + ", " + fields + "}"
    connectors = FAST.replace("{Name: Client Frontend EX01, Server: EX01,",
                              "{Name: Client Frontend EX01, Server: EX01, "
                              "ProtocolLoggingLevel: Verbose,")
    text = FAST_LAB_YAML.replace(SERVER, server).replace(
        TO_INTERNET, TO_INTERNET + f"    ProtocolLoggingLevel: {sink_logging}\n")
    return with_connectors(text, connectors)


def _send_folder(data: Path) -> Path:
    return data / "logs" / "EX01" / "ProtocolLog" / "SmtpSend"


def _text(folder: Path) -> str:
    if not folder.exists():
        return ""
    return "".join(p.read_bytes().decode("utf-8") for p in sorted(folder.iterdir()))


async def _submit(lab: RunningLab, message_id: str, recipients: list[str]) -> None:
    message = EmailMessage()
    message["From"] = "alice@contoso.com"
    message["To"] = ", ".join(recipients)
    message["Subject"] = "send log"
    message["Message-ID"] = message_id
    message.set_content("hello\n")
    await aiosmtplib.send(message, hostname=HOST, port=lab.port(587), start_tls=True,
                          validate_certs=False, username="alice@contoso.com", password=PASSWORD)


async def test_every_hop_of_a_message_is_in_the_send_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lab = await start_lab(_config("IntraOrgConnectorProtocolLoggingLevel: Verbose",
                                  sink_logging="Verbose"), data)
    message_id = "<send-log-1@contoso.com>"
    try:
        await _submit(lab, message_id, ["bob@contoso.com", "someone@fabrikam.example"])
        await lab.wait_for(lambda: len(lab.mailbox("bob@contoso.com")) == 1
                           and len(lab.internet("someone@fabrikam.example")) == 1)
        # The sink stores the message before its reply: wait for the client's QUIT.
        await lab.wait_for(lambda: ",>,QUIT," in _text(_send_folder(data)))
    finally:
        await lab.daemon.stop()  # the kept hop sessions end: every session has its "-"
    folder = _send_folder(data)
    names = [p.name for p in folder.iterdir()]
    assert names and all(re.fullmatch(r"SEND\d{10}-\d+\.LOG", n) for n in names), names
    text = "".join(p.read_bytes().decode("utf-8") for p in sorted(folder.iterdir()))
    assert text.startswith("#Software: Microsoft Exchange Server\r\n#Version: 15.0.0.0\r\n"
                           "#Log-type: SMTP Send Protocol Log\r\n#Date: ")
    assert ("#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
            "remote-endpoint,event,data,context\r\n") in text

    sessions, fragments = exchangelogs.sessions(folder)
    assert not fragments, fragments
    by_port = {int(s.remote_endpoint.rsplit(":", 1)[1]) - lab.offset: s for s in sessions}
    assert set(by_port) == {465, 475, 25}, [s.remote_endpoint for s in sessions]
    proxy, delivery, sink = by_port[465], by_port[475], by_port[25]
    for session in sessions:
        assert session.log_type == "SMTP Send Protocol Log"
        assert session.rcpt_to and session.mail_from == "alice@contoso.com"
        assert [m for _, m in session.sent_messages] == [message_id], session.log_text
    assert proxy.connector_id == delivery.connector_id == INTRA
    assert sink.connector_id == "To Internet"  # the send connector's name
    # The Front End proxies in-session: RecordId 0; the hub names its queue's InternalId.
    assert proxy.sent_messages[0][0] == "0"
    assert int(delivery.sent_messages[0][0]) == int(sink.sent_messages[0][0]) > 0

    for hop in (proxy, delivery):  # X-ANONYMOUSTLS, then EXCHANGEAUTH without its blob
        assert hop.tls_enabled, hop.log_text
        assert hop.tls_protocol == "SP_PROT_TLS1_2_CLIENT", hop.log_text
        assert hop.tls_certificate_server is not None  # this server's own certificate
        assert hop.tls_certificate_remote is not None
        assert "> X-EXPS EXCHANGEAUTH SHA256 <authentication information>" in hop.log_text
        assert "< 235 <authentication information>" in hop.log_text
        assert re.search(r"^> EHLO ex01\.contoso\.com$", hop.log_text, re.M)
        assert re.search(r"^< 220 ", hop.log_text, re.M)
        assert re.search(r"^> BDAT \d+ LAST$", hop.log_text, re.M)
        assert re.search(r"^< 250 2\.6\.0 ", hop.log_text, re.M) or "< 250 2.6.0" in hop.log_text
    assert "\n> XPROXY SID=" in proxy.log_text
    assert "\n> XSESSIONPARAMS " in delivery.log_text
    assert proxy.final_status == "OK"  # the client's session ended: the Front End closed it
    assert sink.rcpt_to == "someone@fabrikam.example" and not sink.tls_enabled
    assert "> QUIT" in sink.log_text and sink.final_status == "Remote"
    assert "< 221" not in sink.log_text  # the reply to QUIT is not logged
    lines = text.splitlines()
    # "attempting to connect" comes first, before the connection has a local endpoint.
    first = next(line for line in lines if f",{proxy.session_id},0," in line)
    assert first.split(",")[4:9] == ["", proxy.remote_endpoint, "*", "",
                                     "attempting to connect"]

    # The Front End's hop is the connection the hub's receive log shows on Client Proxy, and
    # its XPROXY names the client's session on Client Frontend.
    received, _ = exchangelogs.sessions(data / "logs" / "EX01" / "ProtocolLog" / "SmtpReceive")
    hub_side = [s for s in received if s.connector_id == "EX01\\Client Proxy EX01"]
    assert [s.remote_endpoint for s in hub_side] == [proxy.local_endpoint]
    assert hub_side[0].local_endpoint == proxy.remote_endpoint
    sid = re.search(r"XPROXY SID=(\w+)", proxy.log_text)
    assert sid is not None
    clients = [s for s in received if s.session_id == sid[1]]
    assert clients and clients[0].connector_id == "EX01\\Client Frontend EX01"
    mailbox_side = [s for s in received if s.remote_endpoint == delivery.local_endpoint]
    assert mailbox_side and mailbox_side[0].connector_id == "EX01\\Mailbox Delivery EX01"


async def test_the_defaults_log_the_front_end_hop_only_and_none_logs_nothing(
        tmp_path: Path) -> None:
    """Set-FrontendTransportService's default is Verbose, Set-TransportService's None."""
    data = tmp_path / "data"
    lab = await start_lab(_config(), data)
    try:
        await _submit(lab, "<send-log-2@contoso.com>", ["bob@contoso.com", "x@fabrikam.example"])
        await lab.wait_for(lambda: len(lab.mailbox("bob@contoso.com")) == 1
                           and len(lab.internet("x@fabrikam.example")) == 1)
    finally:
        await lab.daemon.stop()
    sessions, _ = exchangelogs.sessions(_send_folder(data))
    assert [int(s.remote_endpoint.rsplit(":", 1)[1]) - lab.offset for s in sessions] == [465]

    data = tmp_path / "none"
    lab = await start_lab(_config(
        "FrontendTransportService: {IntraOrgConnectorProtocolLoggingLevel: None}"), data)
    try:
        await _submit(lab, "<send-log-3@contoso.com>", ["bob@contoso.com", "x@fabrikam.example"])
        await lab.wait_for(lambda: len(lab.mailbox("bob@contoso.com")) == 1
                           and len(lab.internet("x@fabrikam.example")) == 1)
    finally:
        await lab.daemon.stop()
    folder = _send_folder(data)
    assert not folder.exists() or not any(folder.iterdir())


async def test_the_send_log_rolls_and_keeps_its_directory_small(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lab = await start_lab(_config(
        "IntraOrgConnectorProtocolLoggingLevel: Verbose, SendProtocolLogMaxFileSize: 4KB, "
        "SendProtocolLogMaxDirectorySize: 16KB"), data)
    try:
        for n in range(12):
            await aiosmtplib.send(
                f"Subject: {n}\r\nMessage-ID: <roll-{n}@fabrikam.example>\r\n\r\nhello\r\n"
                .encode(), sender="someone@fabrikam.example", recipients=["alice@contoso.com"],
                hostname=HOST, port=lab.port(25), start_tls=False)
        await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 12)
    finally:
        await lab.daemon.stop()
    sizes = {p.name: p.stat().st_size for p in _send_folder(data).iterdir()}
    numbers = [int(m[1]) for name in sizes if (m := re.fullmatch(r"SEND\d{10}-(\d+)\.LOG", name))]
    assert len(numbers) == len(sizes), sizes
    assert max(numbers) > len(sizes), sizes  # it rolled, and deleted the oldest
    assert all(size <= 4096 for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 16384, sizes


async def test_auth_secrets_never_reach_the_send_log(tmp_path: Path) -> None:
    """A client logging through the aiosmtplib hook (transport/smtplog.py) authenticates with
    AUTH LOGIN (and tries AUTH PLAIN) against the lab's Client Frontend: neither the password,
    nor the user name, nor their base64 forms are written."""
    data = tmp_path / "data"
    lab = await start_lab(_config(), data)
    folder = tmp_path / "SmtpSend"
    counter = iter(range(1, 100))
    send_log = SendProtocolLog(ProtocolLog(folder, "SmtpSend",
                                                           lambda: datetime.datetime.now(datetime.UTC)),
                               lambda: f"{next(counter):016X}")
    try:
        for mechanism in ("LOGIN", "PLAIN"):
            log = send_log.session("Smart host", HOST, lab.port(587), ProtocolLoggingLevel.VERBOSE)
            assert log is not None
            smtp = aiosmtplib.SMTP(hostname=HOST, port=lab.port(587), start_tls=False,
                                   validate_certs=False)
            log.attempting()
            banner = await smtp.connect()
            watch(smtp, log, banner)
            await smtp.starttls()
            await smtp.ehlo()
            if mechanism == "LOGIN":
                await smtp.auth_login("alice@contoso.com", PASSWORD)
            else:
                with contextlib.suppress(aiosmtplib.SMTPAuthenticationError):
                    await smtp.auth_plain("alice@contoso.com", PASSWORD)
            await smtp.quit()
            log.disconnect("Remote")
    finally:
        send_log.close()
        await lab.daemon.stop()
    text = "".join(p.read_bytes().decode("utf-8") for p in folder.iterdir())
    secrets = [PASSWORD, "alice@contoso.com",
               base64.b64encode(PASSWORD.encode()).decode(),
               base64.b64encode(b"alice@contoso.com").decode(),
               base64.b64encode(f"\0alice@contoso.com\0{PASSWORD}".encode()).decode()]
    for secret in secrets:
        assert secret not in text, secret
    assert ",>,AUTH LOGIN <authentication information>," in text
    assert ",<,334 <authentication response>," in text
    assert ",>,<authentication information>," in text
    assert ",<,235 2.7.0 Authentication successful," in text
    assert ",>,AUTH PLAIN <authentication information>," in text
    assert ",>,STARTTLS," in text
    sessions, fragments = exchangelogs.sessions(folder)
    assert len(sessions) == 2 and not fragments
    assert all(s.connector_id == "Smart host" for s in sessions)



async def test_a_send_connector_session_is_logged_under_its_name_without_secrets(
        tmp_path: Path) -> None:
    """A smart host with STARTTLS (a lab-PKI certificate) and BasicAuth, reached through the send
    connector client (transport/smtpsend.py), with the connector at ProtocolLoggingLevel
    Verbose, logged line by line; a second connector left at None writes nothing."""
    connectors = """
  - Name: Via Smarthost
    AddressSpaces: ["fabrikam.example"]
    SmartHosts: [smarthost.lab.example]
    SmartHostAuthMechanism: BasicAuth
    AuthenticationCredential: {UserName: relay, Password: "Relay-P@ss1"}
    ProtocolLoggingLevel: Verbose
  - Name: Quiet
    AddressSpaces: ["tailspin.example"]
    SmartHosts: [smarthost.lab.example]
    SmartHostAuthMechanism: BasicAuth
    AuthenticationCredential: {UserName: relay, Password: "Relay-P@ss1"}
"""
    dns = "\n  A:\n    smarthost.lab.example: 127.0.10.70\n"
    data = tmp_path / "data"
    lab = await start_lab(sendlab.lab_text(connectors, dns), data)
    mta = None
    try:
        assert lab.daemon.lab_ca is not None
        certificate = issue_certificate(lab.daemon.lab_ca, "smarthost.lab.example",
                                        datetime.datetime.now(datetime.UTC)).files
        mta = await sendlab.Mta("127.0.10.70", lab.port(25), certificate=certificate,
                                credentials=("relay", "Relay-P@ss1")).start()
        await sendlab.submit(lab.port(587), "someone@fabrikam.example")
        await sendlab.submit(lab.port(587), "someone@tailspin.example")
        await lab.wait_for(lambda: len(mta.messages) == 2)
        await lab.wait_for(lambda: ",>,QUIT," in _text(_send_folder(data)))
    finally:
        await lab.daemon.stop()
        if mta is not None:
            await mta.stop()
    text = _text(_send_folder(data))
    for secret in ("Relay-P@ss1", base64.b64encode(b"Relay-P@ss1").decode(),
                   base64.b64encode(b"relay").decode(),
                   base64.b64encode(b"\0relay\0Relay-P@ss1").decode()):
        assert secret not in text, secret
    sessions, fragments = exchangelogs.sessions(_send_folder(data))
    assert not fragments
    smart = [s for s in sessions if s.connector_id == "Via Smarthost"]
    assert len(smart) == 1, [s.connector_id for s in sessions]
    assert not [s for s in sessions if s.connector_id == "Quiet"]
    session = smart[0]
    assert session.remote_endpoint == f"127.0.10.70:{lab.port(25)}"
    assert session.tls_enabled and session.tls_protocol == "SP_PROT_TLS1_2_CLIENT"
    assert session.tls_certificate_remote is not None
    assert session.tls_certificate_remote.text.startswith("CN=smarthost.lab.example CN=exchsim")
    assert "> STARTTLS" in session.log_text and "> AUTH LOGIN" in session.log_text
    # Every line as the wire carried it (transport/smtplog.watch): AUTH's 334 exchange with
    # its secrets left out, then DATA, its 354 and the reply to the data.
    lines = session.log_text.splitlines()
    auth = lines.index("> AUTH LOGIN <authentication information>")
    assert lines[auth + 1:auth + 4] == ["< 334 <authentication response>",
                                        "> <authentication information>",
                                        "< 235 2.7.0 Authentication successful"], lines
    data = lines.index("> DATA")
    assert lines[data + 1].startswith("< 354 ") and lines[data + 2] == "< 250 2.0.0 OK queued"
    assert lines[data + 3] == "> QUIT"
    assert session.mail_from == "alice@contoso.com"
    assert session.rcpt_to == "someone@fabrikam.example"
    [(record_id, message_id)] = session.sent_messages
    assert int(record_id) > 0 and message_id.startswith("<") and message_id.endswith(">")
    assert session.final_status == "Remote"  # after QUIT
