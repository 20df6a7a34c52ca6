"""``exchsim serve --service``: EX01's Front End, Transport and Mailbox Transport Delivery
services as separate processes on one data directory, talking over loopback (services.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import smtplib
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    ROOT,
    port_offset,
    start_lab,
    with_connectors,
)

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
HOST = "127.0.10.1"
# The hub's retries wait a minute: a held message moves only when the test retries its queue.
SLOW_RETRY = FAST_LAB_YAML.replace(
    'Address: 127.0.10.1, Version: "15.2"}',
    'Address: 127.0.10.1, Version: "15.2", TransientFailureRetryInterval: "00:01:00", '
    'MessageRetryInterval: "00:01:00"}')


class Services:
    """The services of EX01 started one by one, each its own ``exchsim serve`` process."""

    def __init__(self, config: Path, data: Path) -> None:
        self.config, self.data, self.offset = config, data, port_offset()
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.listening: dict[str, list[int]] = {}

    async def start(self, service: str, server: str = "EX01") -> None:
        """``service`` of ``server`` (``all``: every service, no --service). A port of the
        offset taken by another test run moves the first process to another offset."""
        for _ in range(5):
            seen = await self._start(service, server)
            if seen is None:
                return
            assert not self.procs and any("address already in use" in s for s in seen), (
                f"exchsim serve --service {service} exited: {seen}")
            self.offset = port_offset()
        raise AssertionError("no free port offset found")

    async def _start(self, service: str, server: str) -> list[str] | None:
        chosen = [] if service == "all" else ["--service", service]
        proc = await asyncio.create_subprocess_exec(
            *EXCHSIM, "serve", "--config", str(self.config), "--data", str(self.data),
            "--port-offset", str(self.offset), "--server", server, *chosen, cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        seen: list[str] = []
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
            if line == "exchsim: ready":
                break
            if not line:
                await proc.wait()
                return seen
            seen.append(line)
        self.procs[service] = proc
        self.listening[service] = sorted(
            int(s.rpartition(":")[2]) - self.offset for s in seen if " listening on " in s)
        return None

    async def stop(self, service: str) -> int:
        proc = self.procs.pop(service)
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode or 0

    async def queue(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *EXCHSIM, "queue", "--config", str(self.config), "--data", str(self.data),
            "--server", "EX01", *args, cwd=ROOT, env=ENV,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    def mailbox(self, address: str) -> list[bytes]:
        folder = self.data / "mailboxes" / address / "new"
        return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.exists() else []


@pytest.fixture(params=[SLOW_RETRY])
async def services(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Services]:
    config = tmp_path / "lab.yaml"
    config.write_text(with_connectors(request.param, FAST), encoding="utf-8")
    running = Services(config, tmp_path / "data")
    try:
        yield running
    finally:
        for service in list(running.procs):
            with contextlib.suppress(Exception):
                await running.stop(service)


def submit(services: Services, subject: str) -> None:
    """alice on 587 (Client Frontend: STARTTLS, AUTH), to bob, with smtplib."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the lab's own certificate; TLS is not tested here
    with smtplib.SMTP(HOST, 587 + services.offset, timeout=30) as client:
        client.starttls(context=context)
        client.login("alice@contoso.com", "P@ssw0rd!")
        client.sendmail("alice@contoso.com", ["bob@contoso.com"],
                        f"From: alice@contoso.com\r\nTo: bob@contoso.com\r\nSubject: {subject}"
                        "\r\n\r\nhello\r\n")


async def until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_split_services_carry_mail_from_587_to_the_maildir(services: Services) -> None:
    await services.start("FrontEnd")
    await services.start("Transport")
    assert services.listening == {"FrontEnd": [25, 587, 717], "Transport": [465, 2525]}
    control = services.data / "queue" / "EX01.sock"
    assert control.exists()  # the Transport service's; the Front End has none

    # Mailbox Transport Delivery is not running yet: the hub holds the message for 475.
    await asyncio.to_thread(submit, services, "split")
    code, out, err = await services.queue("--format", "json", "messages")
    assert code == 0, err
    held = [m for m in json.loads(out) if m["Subject"] == "split"]
    assert len(held) == 1 and held[0]["Status"] == "Retry", held
    assert services.mailbox("bob@contoso.com") == []

    await services.start("MailboxDelivery")
    assert services.listening["MailboxDelivery"] == [475]
    # Only the live Transport process acts on a queue (transport/queuecontrol.py).
    code, _, err = await services.queue("retry", held[0]["Queue"])
    assert code == 0, err
    await until(lambda: len(services.mailbox("bob@contoso.com")) == 1)
    delivered = services.mailbox("bob@contoso.com")[0].decode().replace("\r\n ", " ")
    assert "Subject: split" in delivered
    assert "via Frontend Transport" in delivered  # it went through the Front End's proxy
    code, out, err = await services.queue("--format", "json", "messages")
    assert code == 0 and json.loads(out) == [], (out, err)

    # One writer per log file: each service writes its own protocol log folder (Exchange's
    # FrontEnd, Hub and Mailbox folders); tracking keeps one folder, MSGTRK and MSGTRKMD files.
    for service in list(services.procs):
        assert await services.stop(service) == 0
    logs = services.data / "logs" / "EX01"
    assert not (logs / "ProtocolLog").exists()
    assert any((logs / "FrontEnd" / "ProtocolLog" / "SmtpSend").glob("SEND*.LOG"))  # the proxy
    for folder in ("Hub", "Mailbox"):
        received = logs / folder / "ProtocolLog" / "SmtpReceive"
        assert any(received.glob("RECV*.LOG")), folder
    hub_log = "".join(p.read_text() for p in (logs / "Hub" / "ProtocolLog" / "SmtpReceive")
                      .glob("*.LOG"))
    assert "Client Proxy EX01" in hub_log and "Mailbox Delivery EX01" not in hub_log
    tracking = {p.name[:8].rstrip("0123456789")
                for p in (logs / "MessageTracking").glob("*.LOG")}
    assert tracking == {"MSGTRK", "MSGTRKMD"}


async def test_the_front_end_alone_answers_prx_and_keeps_nothing(services: Services) -> None:
    await services.start("FrontEnd")  # no Transport service anywhere
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(submit, services, "nohub")
    assert refused.value.smtp_code == 451
    assert b"PRX" in refused.value.smtp_error
    assert not (services.data / "queue" / "EX01.sqlite").exists()


async def test_an_unknown_service_is_a_command_line_error(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "serve", "--config", "configs/single-server.yaml", "--data", str(tmp_path / "d"),
        "--server", "EX01", "--service", "Hub", cwd=ROOT, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert ("argument --service: unknown service 'Hub'; the services of a server are: "
            "FrontEnd, Transport, MailboxDelivery") in err.decode()
    assert not (tmp_path / "d").exists()


EX02 = '  - {Name: EX02, Role: Mailbox, Fqdn: ex02.contoso.com, Address: 127.0.10.2, Version: "15.2"}'
TWO_HUBS = SLOW_RETRY.replace("MessageRetryInterval: \"00:01:00\"}\n",
                              "MessageRetryInterval: \"00:01:00\"}\n" + EX02 + "\n", 1)


def send25(services: Services, subject: str) -> None:
    with smtplib.SMTP(HOST, 25 + services.offset, timeout=30) as client:
        client.sendmail("carol@fabrikam.example", ["bob@contoso.com"],
                        f"From: carol@fabrikam.example\r\nTo: bob@contoso.com\r\n"
                        f"Subject: {subject}\r\n\r\nhello\r\n")


@pytest.mark.parametrize("services", [TWO_HUBS], indirect=True)
async def test_the_front_end_hands_mail_to_another_hub_when_its_own_is_down(
        services: Services) -> None:
    """EX01's Transport service is not running: EX01's Front End proxies to EX02's hub, which
    delivers to EX01's Mailbox Transport Delivery; with EX02 down too the client gets PRX4."""
    assert EX02 in services.config.read_text()
    await services.start("FrontEnd")
    await services.start("MailboxDelivery")
    await services.start("all", "EX02")
    await asyncio.to_thread(send25, services, "via ex02")
    await until(lambda: len(services.mailbox("bob@contoso.com")) == 1)
    delivered = services.mailbox("bob@contoso.com")[0].decode().replace("\r\n ", " ")
    assert "from ex01.contoso.com (127.0.10.1) by ex02.contoso.com (127.0.10.2)" in delivered

    assert await services.stop("all") == 0  # every hub down now
    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(send25, services, "no hub")
    assert refused.value.smtp_code == 451
    assert refused.value.smtp_error.decode() == (
        "4.7.0 Temporary server error. Please try again later. PRX4")
    await asyncio.sleep(0.5)
    assert len(services.mailbox("bob@contoso.com")) == 1  # the client keeps it, nobody else
    assert not (services.data / "queue" / "EX01.sqlite").exists()


CAS01 = ('  - {Name: CAS01, Role: ClientAccess, Fqdn: cas01.contoso.com, Address: 127.0.10.5, '
         'Version: "15.0"}')


async def test_a_client_access_server_proxies_to_the_mailbox_servers_hub(tmp_path: Path) -> None:
    """Role ClientAccess (Exchange 2013): its Front End alone, mail handed to EX01's hub."""
    lines = FAST_LAB_YAML.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  - {Name: EX01, Role:"))
    text = "\n".join([*lines[:at + 1], CAS01, *lines[at + 1:]]) + "\n"
    running = await start_lab(with_connectors(text, FAST), tmp_path / "data")
    try:
        cas = sorted(lis.port - running.offset for lis in running.daemon.listeners
                     if lis.server == "CAS01")
        assert cas == [25, 587, 717]
        assert "CAS01" not in running.daemon.queues  # no Transport service, no queue

        def send() -> None:
            with smtplib.SMTP("127.0.10.5", running.port(25), timeout=30) as client:
                client.sendmail("carol@fabrikam.example", ["bob@contoso.com"],
                                "From: carol@fabrikam.example\r\nTo: bob@contoso.com\r\n"
                                "Subject: through cas01\r\n\r\nhello\r\n")
        await asyncio.to_thread(send)
        await running.wait_for(lambda: len(running.mailbox("bob@contoso.com")) == 1)
        delivered = running.mailbox("bob@contoso.com")[0].decode().replace("\r\n ", " ")
        assert "from cas01.contoso.com (127.0.10.5) by ex01.contoso.com (127.0.10.1)" in (
            delivered)
    finally:
        await running.daemon.stop()


async def test_a_service_the_server_does_not_have_is_a_command_line_error(
        tmp_path: Path) -> None:
    lines = FAST_LAB_YAML.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  - {Name: EX01, Role:"))
    config = tmp_path / "cas.yaml"
    config.write_text("\n".join([*lines[:at + 1], CAS01, *lines[at + 1:]]) + "\n",
                      encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "serve", "--config", str(config), "--data", str(tmp_path / "d"),
        "--server", "CAS01", "--service", "transport", cwd=ROOT, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode().strip() == ("exchsim: CAS01 is a server of Role ClientAccess: it has no "
                                    "Transport service (its services: FrontEnd)")
    assert not (tmp_path / "d").exists()
