"""The whole lab of configs/lab.yaml as the README's first command runs it: one ``exchsim lab``
process on loopback with a port offset, and real clients (swaks, smtplib).

- Internet mail to EDGE01:25 for bob lands in bob's Maildir on EX02 (EdgeSync - Inbound);
- alice on EX01's 587 to user@fabrikam.example leaves through EDGE01 (EdgeSync - ... to
  Internet, the "*" MX) and lands in the internet sink without an organization header;
- alice to bob crosses from EX01 to EX02;
- seed 001 both ways: EX01 <-> PARTNER01 with Domain Security, also for EX02's mail (through EX01's
  To Partner connector).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import signal
import smtplib
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, port_offset, swaks
from tests.integration.test_health import health

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
PASSWORD = "P@ssw0rd!"
EX01, EX02, EDGE01, PARTNER01 = "127.0.10.1", "127.0.10.2", "127.0.10.10", "127.0.10.60"
DOMAIN_SECURED = "030e9e2f-134b-4020-861c-5bfc616f113d"  # the classification (exchange.md §4.2)


@dataclass
class Lab:
    proc: asyncio.subprocess.Process
    data: Path
    offset: int
    listening: list[str]

    def port(self, port: int) -> int:
        return port + self.offset

    def folder(self, kind: str, address: str) -> list[bytes]:
        path = self.data / kind / address / "new"
        return [p.read_bytes() for p in sorted(path.iterdir())] if path.exists() else []

    async def wait_for(self, kind: str, address: str, count: int = 1,
                       timeout: float = 40.0) -> list[bytes]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found := self.folder(kind, address)) < count:
            assert asyncio.get_running_loop().time() < deadline, \
                f"{kind}/{address} holds {len(found)} messages, not {count}"
            await asyncio.sleep(0.1)
        return found


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    """``exchsim lab --config configs/lab.yaml --port-offset N`` (README's first command)."""
    data = tmp_path / "data"
    running: Lab | None = None
    for _ in range(5):
        offset = port_offset()
        proc = await asyncio.create_subprocess_exec(
            *EXCHSIM, "lab", "--config", "configs/lab.yaml", "--port-offset", str(offset),
            "--data", str(data), cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        seen: list[str] = []
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode().strip()
            if line == "exchsim: ready":
                running = Lab(proc, data, offset, seen)
                break
            if not line:
                await proc.wait()
                break
            seen.append(line)
        if running is not None:
            break
        assert any("address already in use" in s for s in seen), seen
    assert running is not None, "no free port offset found"
    try:
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            running.proc.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(running.proc.communicate(), 60)
        assert running.proc.returncode == 0, rest.decode()[-2000:]


def parsed(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def received_by(message: email.message.EmailMessage) -> list[str]:
    """Each Received line's ``by`` host, top (last hop) first."""
    return [" ".join(str(line).split()).split(" by ", 1)[1].split()[0]
            for line in message.get_all("Received") or []]


def org_headers(message: email.message.EmailMessage) -> list[str]:
    return [k for k in message if k.lower().startswith("x-ms-exchange-organization-")]


def submit(host: str, port: int, user: str, rcpt: str, subject: str) -> None:
    """An authenticated submission on 587 (Client Frontend) after STARTTLS, with smtplib."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the servers' setup certificates: not what is tested
    body = f"From: {user}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nhello\r\n"
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.starttls(context=context)
        client.login(user, PASSWORD)
        client.sendmail(user, [rcpt], body.encode())


async def test_the_lab_runs_every_server_of_the_topology(lab: Lab, tmp_path: Path) -> None:
    listening = {line.split(" listening on ")[1] for line in lab.listening
                 if " listening on " in line}
    mailbox_ports = (25, 465, 475, 587, 717, 2525)
    expected = {f"{host}:{lab.port(p)}" for host in (EX01, EX02, PARTNER01)
                for p in mailbox_ports}
    expected |= {f"{EDGE01}:{lab.port(25)}", f"127.0.10.250:{lab.port(25)}",
                 f"127.0.10.251:{lab.port(80)}"}
    assert listening == expected
    # exchsim health (the image's HEALTHCHECK) on the lab process: every listener answers.
    code, out, err = await health(lab.proc.pid, cwd=tmp_path)
    assert code == 0, (out, err)
    probed = {line.split()[3] for line in out}
    assert probed == expected and all(line.endswith(" ok") for line in out), out


async def test_internet_mail_through_the_edge_lands_in_bobs_maildir_on_ex02(lab: Lab) -> None:
    code, out = await swaks("--server", f"{EDGE01}:{lab.port(25)}",
                            "--from", "carol@fabrikam.example", "--to", "bob@contoso.com",
                            "--header", "Subject: from the internet")
    assert code == 0, out
    assert "250 2.6.0" in out
    [raw] = await lab.wait_for("mailboxes", "bob@contoso.com")
    message = parsed(raw)
    assert message["Subject"] == "from the internet"
    # EDGE01 -> EX02's Front End (bob's server) -> EX02's hub -> EX02's Mailbox Transport.
    assert received_by(message) == ["ex02.contoso.com"] * 3 + ["edge01.contoso.com"]
    assert lab.folder("mailboxes", "alice@contoso.com") == []


async def test_alice_to_the_internet_leaves_through_the_edge_without_org_headers(
        lab: Lab) -> None:
    await asyncio.to_thread(submit, EX01, lab.port(587), "alice@contoso.com",
                            "user@fabrikam.example", "to the internet")
    [raw] = await lab.wait_for("internet", "user@fabrikam.example")
    message = parsed(raw)
    assert message["Subject"] == "to the internet"
    assert org_headers(message) == []
    # EX01's Front End (587) -> EX01's hub (465) -> EDGE01 -> the sink.
    assert received_by(message) == ["edge01.contoso.com", "ex01.contoso.com", "ex01.contoso.com"]


async def test_alice_to_bob_crosses_from_ex01_to_ex02(lab: Lab) -> None:
    await asyncio.to_thread(submit, EX01, lab.port(587), "alice@contoso.com",
                            "bob@contoso.com", "alice to bob")
    [raw] = await lab.wait_for("mailboxes", "bob@contoso.com")
    message = parsed(raw)
    assert message["Subject"] == "alice to bob"
    # EX01's Front End (587) -> EX01's hub (465) -> EX02's Mailbox Transport Delivery (475).
    assert received_by(message) == ["ex02.contoso.com", "ex01.contoso.com", "ex01.contoso.com"]
    assert "via Mailbox Transport" in str(message.get_all("Received")[0])
    assert message["X-MS-Exchange-Organization-AuthAs"] == "Internal"
    assert lab.folder("internet", "bob@contoso.com") == []


async def test_seed_001_domain_security_both_ways(lab: Lab) -> None:
    # Contoso -> partner: EX01's To Partner connector, Domain Security (EX01's lab certificate).
    await asyncio.to_thread(submit, EX01, lab.port(587), "alice@contoso.com",
                            "user@partner.example", "to the partner")
    # bob's (EX02) goes the same way: To Partner is EX01's, and more specific than the Edge's *.
    await asyncio.to_thread(submit, EX02, lab.port(587), "bob@contoso.com",
                            "user@partner.example", "bob to the partner")
    found = await lab.wait_for("mailboxes", "user@partner.example", count=2)
    by_subject = {parsed(raw)["Subject"]: parsed(raw) for raw in found}
    assert set(by_subject) == {"to the partner", "bob to the partner"}
    for message in by_subject.values():
        assert message["X-MS-Exchange-Organization-AuthAs"] == "Partner"
        assert message["X-MS-Exchange-Organization-AuthDomain"] == "contoso.com"
        assert message["X-MS-Exchange-Organization-Classification"] == DOMAIN_SECURED
        assert "edge01.contoso.com" not in received_by(message)
    assert "ex02.contoso.com" in received_by(by_subject["bob to the partner"])
    assert lab.folder("internet", "user@partner.example") == []

    # partner -> Contoso: PARTNER01's To Contoso connector, by its MX for contoso.com
    # (mail.contoso.com, EX01's Default Frontend), Domain Security for partner.example.
    await asyncio.to_thread(submit, PARTNER01, lab.port(587), "user@partner.example",
                            "alice@contoso.com", "from the partner")
    [raw] = await lab.wait_for("mailboxes", "alice@contoso.com")
    message = parsed(raw)
    assert message["Subject"] == "from the partner"
    assert message["X-MS-Exchange-Organization-AuthAs"] == "Partner"
    assert message["X-MS-Exchange-Organization-AuthDomain"] == "partner.example"
    assert message["X-MS-Exchange-Organization-Classification"] == DOMAIN_SECURED
