"""Edge Transport over real sockets in one process (exchange.md §7.6, §4.1 item 3, §12.5):
EX01 and EX02 (Mailbox) and EDGE01 (Edge, subscribed by ``EdgeSubscriptions``), each in its
own daemon on 127.0.10.x with one port offset, and the internet sink.

Internet mail enters at EDGE01:25 and goes through ``EdgeSync - Inbound to <Site>`` to a
Mailbox server's Default Frontend (25) over Direct Trust; mail to the Internet leaves a Mailbox
server for EDGE01:25 (SmtpRelayWithinAdSiteToEdge) and goes out through ``EdgeSync - <Site> to
Internet`` by DNS (the lab's ``*`` MX: the sink). The organization's headers are stripped from
what arrives at the Edge from the Internet and from what the Edge sends out, kept between the
Edge and the Mailbox servers: a message to ``held.example`` (its MX, an MTA of the test's,
is not listening at first) waits in the Edge's queue, where its header block shows what the Edge
received from the Mailbox server, before it leaves for that MTA.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import json
import os
import smtplib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exchsim.config.load import load_config_text
from exchsim.config.model import Lab
from exchsim.daemon import LabDaemon
from tests.integration.conftest import port_offset, swaks, with_connectors
from tests.integration.sendlab import Mta

ROOT = Path(__file__).resolve().parents[2]
EDGE_LAB = ROOT / "tests" / "configs" / "edge-lab.yaml"
EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
INTERNET = "EdgeSync - Default-First-Site-Name to Internet"
NO_TARPIT = """
  - {Name: Default internal receive connector EDGE01, Server: EDGE01, TarpitInterval: "00:00:00", ProtocolLoggingLevel: Verbose}
  - {Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00"}
  - {Name: Default Frontend EX02, Server: EX02, TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00"}
  - {Name: Client Frontend EX01, Server: EX01, TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00"}
"""


HELD_MX = "127.0.10.249"
"""``held.example``'s MX: nothing listens there until a test starts its MTA."""


def edge_lab_text() -> str:
    text = EDGE_LAB.read_text(encoding="utf-8").replace(
        'RetryInterval: "00:00:02"', 'RetryInterval: "00:00:01"')
    text = text.replace("\n  MX:\n", "\n  MX:\n    held.example:\n      - {Preference: 10, "
                        f"NameExchange: mx.held.example, Address: {HELD_MX}}}\n", 1)
    assert "held.example" in text
    return with_connectors(text, NO_TARPIT)


@dataclass
class EdgeLab:
    lab: Lab
    data: Path
    config: Path
    offset: int
    daemons: dict[str, LabDaemon] = field(default_factory=dict)

    def port(self, port: int) -> int:
        return port + self.offset

    async def start(self, name: str) -> None:
        daemon = LabDaemon(self.lab, self.data, port_offset=self.offset, only=name,
                           run_sink=name == "EX01")
        await daemon.start()
        self.daemons[name] = daemon

    async def stop(self, name: str) -> None:
        await self.daemons.pop(name).stop()

    def folder(self, kind: str, address: str) -> list[bytes]:
        path = self.data / kind / address.lower() / "new"
        return [p.read_bytes() for p in sorted(path.iterdir())] if path.exists() else []

    def receive_log(self, server: str) -> str:
        path = self.data / "logs" / server / "ProtocolLog" / "SmtpReceive"
        return "".join(p.read_text("utf-8") for p in sorted(path.iterdir())) if path.exists() \
            else ""

    async def wait_for(self, kind: str, address: str, count: int = 1,
                       timeout: float = 20.0) -> list[bytes]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found := self.folder(kind, address)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{address} has {len(found)} messages, not {count}")
            await asyncio.sleep(0.05)
        return found


@pytest.fixture
async def edge_lab(tmp_path: Path) -> AsyncIterator[EdgeLab]:
    text = edge_lab_text()
    config = tmp_path / "edge-lab.yaml"
    config.write_text(text, encoding="utf-8")
    lab = load_config_text(text, str(config))
    for _ in range(20):
        running = EdgeLab(lab, tmp_path / "data", config, port_offset())
        try:
            for name in ("EX01", "EX02", "EDGE01"):
                await running.start(name)
        except OSError:
            for name in list(running.daemons):
                await running.stop(name)
            continue
        break
    else:
        raise RuntimeError("no free port offset found")
    try:
        yield running
    finally:
        for name in list(running.daemons):
            await running.stop(name)


def headers(raw: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def received_by(message: email.message.EmailMessage) -> list[str]:
    """Each Received line's ``by`` host and, for the Exchange hops, its ``via``, top first."""
    out = []
    for line in message.get_all("Received") or []:
        text = " ".join(str(line).split())
        by = text.split(" by ", 1)[1].split()[0]
        via = " via Frontend Transport" if "via Frontend Transport" in text else \
            " via Mailbox Transport" if "via Mailbox Transport" in text else ""
        out.append(by + via)
    return out


def org_headers(message: email.message.EmailMessage) -> list[str]:
    return [k for k in message if k.lower().startswith("x-ms-exchange-organization-")]


def send(host: str, port: int, sender: str, rcpt: str, subject: str,
         extra: str = "", login: tuple[str, str] | None = None) -> None:
    body = (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n{extra}\r\n"
            "hello\r\n").encode()
    with smtplib.SMTP(host, port, timeout=20, source_address=("127.0.0.1", 0)) as client:
        if login is not None:
            client.starttls()
            client.login(*login)
        client.sendmail(sender, [rcpt], body)


ALICE = ("alice@contoso.com", "P@ssw0rd!")


async def test_internet_mail_enters_at_the_edge_and_lands_in_bobs_mailbox(
        edge_lab: EdgeLab) -> None:
    forged = "X-MS-Exchange-Organization-AuthAs: Internal\r\n"
    await asyncio.to_thread(send, "127.0.10.10", edge_lab.port(25), "carol@fabrikam.example",
                            "bob@contoso.com", "from the internet", forged)
    [raw] = await edge_lab.wait_for("mailboxes", "bob@contoso.com")
    message = headers(raw)
    # Edge -> EX02's Front End (bob's server first) -> EX02's hub -> EX02's 475.
    assert received_by(message) == [
        "ex02.contoso.com via Mailbox Transport", "ex02.contoso.com",
        "ex02.contoso.com via Frontend Transport", "edge01.contoso.com"]
    # The forged header was stripped at the Edge (anonymous); the Edge's own stamps survived
    # the Direct Trust hop: the message was authenticated where it entered, at the Edge.
    assert message["X-MS-Exchange-Organization-AuthAs"] == "Anonymous"
    assert message["X-MS-Exchange-Organization-AuthSource"] == "edge01.contoso.com"
    log = edge_lab.receive_log("EX02")
    assert "edge01.contoso.com,authenticated by Direct Trust (DirectTrustTLS)" in log
    assert "Default Frontend EX02" in log


async def test_unknown_recipient_is_accepted_at_the_edge_and_refused_inside(
        edge_lab: EdgeLab) -> None:
    await asyncio.to_thread(send, "127.0.10.10", edge_lab.port(25), "carol@fabrikam.example",
                            "nobody@contoso.com", "no such user")
    # The Edge has no recipient list: the Mailbox server's hub NDRs it to carol (the sink).
    [ndr] = await edge_lab.wait_for("internet", "carol@fabrikam.example")
    assert b"nobody@contoso.com" in ndr and b"5.1.1" in ndr
    assert received_by(headers(ndr))[-1] == "edge01.contoso.com"  # out through the Edge


async def test_mail_to_the_internet_leaves_through_the_edge_without_org_headers(
        edge_lab: EdgeLab) -> None:
    await asyncio.to_thread(send, "127.0.10.1", edge_lab.port(587), ALICE[0],
                            "user@fabrikam.example", "to the internet", login=ALICE)
    [raw] = await edge_lab.wait_for("internet", "user@fabrikam.example")
    message = headers(raw)
    assert org_headers(message) == []
    assert not [k for k in message if k.lower().startswith("x-ms-exchange-forest-")]
    hops = received_by(message)
    assert hops[0] == "edge01.contoso.com" and "ex01.contoso.com" in hops
    log = edge_lab.receive_log("EDGE01")
    assert "ex01.contoso.com,authenticated by Direct Trust (DirectTrustTLS)" in log


async def held_at_the_edge(running: EdgeLab, rcpt: str, timeout: float = 20.0) -> bytes:
    """The bytes of the message for ``rcpt`` in the Edge's queue, once the Edge has tried to send
    it (and failed: nothing listens at its MX yet)."""
    queue = running.daemons["EDGE01"].queues["EDGE01"]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        for item in await queue.due(later, limit=100):
            if rcpt in item.recipients and item.attempts >= 1:
                return item.data
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message for {rcpt} waits in the Edge's queue")


async def test_org_headers_survive_the_hop_to_the_edge_and_go_at_the_internet(
        edge_lab: EdgeLab) -> None:
    await asyncio.to_thread(send, "127.0.10.1", edge_lab.port(587), ALICE[0],
                            "user@held.example", "held at the edge", login=ALICE)
    # What the Edge received from EX01 (Direct Trust, ExchangeServers' rights: the organization
    # headers are accepted, exchange.md §5.1): EX01's authentication stamps, not the Edge's own.
    # Had the Edge taken EX01 for an anonymous sender, it would have removed them and stamped
    # AuthAs Anonymous with itself as the AuthSource (exchange.md §5.2).
    held = headers(await held_at_the_edge(edge_lab, "user@held.example"))
    assert held["X-MS-Exchange-Organization-AuthAs"] == "Internal"
    assert held["X-MS-Exchange-Organization-AuthSource"] == "ex01.contoso.com"
    assert held["X-MS-Exchange-Organization-AuthMechanism"] is not None
    assert held["X-MS-Exchange-Organization-Network-Message-Id"] is not None
    assert received_by(held)[0] == "edge01.contoso.com"
    log = edge_lab.receive_log("EDGE01")
    assert "ex01.contoso.com,authenticated by Direct Trust (DirectTrustTLS)" in log
    # The same message, once its MTA listens: out of the Edge without any of them.
    mta = await Mta(HELD_MX, edge_lab.port(25), name="mx.held.example").start()
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not mta.messages:
            assert asyncio.get_running_loop().time() < deadline, "the Edge never sent it"
            await asyncio.sleep(0.05)
    finally:
        await mta.stop()
    [out] = mta.messages
    assert out.peer == "127.0.10.10" and out.rcpt_tos == ["user@held.example"]
    sent = headers(out.data)
    assert sent["Message-ID"] == held["Message-ID"]
    assert org_headers(held) and org_headers(sent) == []
    assert not [k for k in sent if k.lower().startswith("x-ms-exchange-forest-")]


async def test_anonymous_relay_at_the_edge_is_refused(edge_lab: EdgeLab) -> None:
    code, out = await swaks("--server", f"127.0.10.10:{edge_lab.port(25)}",
                            "--from", "carol@fabrikam.example", "--to", "user@fabrikam.example",
                            "--quit-after", "RCPT")
    assert code != 0
    assert "<** 550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain" in out


async def exchsim_queue(running: EdgeLab, *args: str) -> Any:
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "queue", "--config", str(running.config), "--data", str(running.data),
        "--server", "EX01", "--format", "json", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_the_edge_hop_waits_in_retry_while_the_edge_is_down(edge_lab: EdgeLab) -> None:
    await edge_lab.stop("EDGE01")
    await asyncio.to_thread(send, "127.0.10.1", edge_lab.port(587), ALICE[0],
                            "later@fabrikam.example", "while the edge is down", login=ALICE)
    queue: dict[str, Any] | None = None
    for _ in range(200):
        queues = await exchsim_queue(edge_lab, "get")
        found = [q for q in queues if q["DeliveryType"] == "SmtpRelayWithinAdSiteToEdge"]
        if found and found[0]["Status"] == "Retry":
            queue = found[0]
            break
        await asyncio.sleep(0.1)
    assert queue is not None, "the Edge's queue never reached Retry"
    assert queue["NextHopDomain"] == INTERNET.lower()
    assert queue["MessageCount"] == 1
    assert "127.0.10.10" in queue["LastError"]
    assert edge_lab.folder("internet", "later@fabrikam.example") == []
    await edge_lab.start("EDGE01")
    [raw] = await edge_lab.wait_for("internet", "later@fabrikam.example", timeout=30)
    assert org_headers(headers(raw)) == []


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_check_lists_the_edgesync_connectors() -> None:
    code, out, err = await run_cli("check", "--config", str(EDGE_LAB))
    assert code == 0, err
    assert "Identity                    : EdgeSync - Inbound to Default-First-Site-Name" in out
    assert f"Identity                    : {INTERNET}" in out
    assert out.count("Created by the Edge subscription of EDGE01") == 2
    assert "AddressSpaces               : {SMTP:--;1}" in out


async def test_check_names_a_bad_subscription(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EDGE_LAB.read_text(encoding="utf-8").replace(
        "- {Server: EDGE01, Site: Default-First-Site-Name}", "- {Server: EX02}"),
        encoding="utf-8")
    code, out, err = await run_cli("check", "--config", str(bad))
    assert code != 0
    assert (f"{bad}: EdgeSubscriptions[0] (EX02).Server: 'EX02' is not allowed: EX02 is a "
            "server of Role Mailbox; an Edge subscription names a server of Role Edge "
            "(EDGE01; exchange.md §7.6)") in out + err


def anonymous_tls_session(port: int, source: str, cert: Path, key: Path,
                          rcpt: str) -> tuple[str, str]:
    """Python's ssl as an Exchange server's hop client: EHLO, X-ANONYMOUSTLS presenting
    ``cert``, then EHLO and (if that was accepted) MAIL and RCPT; the two replies that matter."""
    import socket
    import ssl

    def reply(stream: Any) -> str:
        lines = []
        while True:
            line = stream.readline().decode().rstrip("\r\n")
            lines.append(line)
            if line[3:4] != "-":
                return "\n".join(lines)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.10.1", port), timeout=10,
                                  source_address=(source, 0)) as raw:
        stream = raw.makefile("rwb")
        reply(stream)
        for line in ("EHLO edge01.contoso.com", "X-ANONYMOUSTLS"):
            stream.write(line.encode() + b"\r\n")
            stream.flush()
            reply(stream)
        with context.wrap_socket(raw) as tls:
            secure = tls.makefile("rwb")
            secure.write(b"EHLO edge01.contoso.com\r\n")
            secure.flush()
            ehlo = reply(secure)
            if not ehlo.startswith("250"):
                return ehlo, ""
            secure.write(f"MAIL FROM:<carol@fabrikam.example>\r\nRCPT TO:<{rcpt}>\r\n"
                         .encode())
            secure.flush()
            reply(secure)
            return ehlo, reply(secure)


@pytest.mark.parametrize("subscribed", [True, False])
async def test_direct_trust_exists_only_with_the_subscription(tmp_path: Path,
                                                              subscribed: bool) -> None:
    text = edge_lab_text()
    if not subscribed:
        text = text.replace("  - {Server: EDGE01, Site: Default-First-Site-Name}\n", "")
        text = text.replace("EdgeSubscriptions:\n", "")
    lab = load_config_text(text, "edge.yaml")
    assert bool(lab.edge_subscriptions) is subscribed
    for _ in range(20):
        offset = port_offset()
        daemon = LabDaemon(lab, tmp_path / "data", port_offset=offset)
        try:
            await daemon.start()
        except OSError:
            continue
        break
    else:
        raise RuntimeError("no free port offset found")
    try:
        servers = tmp_path / "data" / "pki" / "servers"
        ehlo, rcpt = await asyncio.to_thread(
            anonymous_tls_session, 25 + offset, "127.0.10.10", servers / "EDGE01.crt",
            servers / "EDGE01.key", "user@fabrikam.example")
    finally:
        await daemon.stop()
    if subscribed:  # the Edge's certificate: an Exchange server, which may relay
        assert ehlo.startswith("250-"), ehlo
        assert rcpt.startswith("250 2.1.5"), rcpt
    else:  # not published without a subscription (exchange.md §4.1 item 3)
        assert ehlo == "454 4.7.0 Temporary authentication failure"
