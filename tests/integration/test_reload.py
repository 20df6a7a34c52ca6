"""A running lab takes a changed routing configuration from its file (exchsim/reload.py,
exchange.md §8.2, §8.5), over real sockets: the smart host is a plain aiosmtpd server
(tests/integration/sendlab.py), the queue is read with ``exchsim queue``.

Retries are a minute apart in these labs (Lab.RetryInterval), so a message delivered within a
few seconds of the change was routed again by the reload, not by its next retry."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import signal
import smtplib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exchsim import reload
from exchsim.policy.outbound import UNREACHABLE_REASON
from exchsim.transport.queue import QueuedMessage
from tests.integration.conftest import ROOT, RunningLab, fast, port_offset, start_lab
from tests.integration.sendlab import Mta, lab_text, submit
from tests.labyaml import CONFIGS, SEED001_YAML

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
SMARTHOST = "127.0.10.70"
DNS = """
  A:
    smarthost.lab.example: 127.0.10.70
"""
TO_FABRIKAM = """
  - Name: To Fabrikam
    AddressSpaces: ["fabrikam.example"]
    SmartHosts: [smarthost.lab.example]
"""
DEADLINE = 5.0  # seconds from the file's change to the delivery


def config_text(send_connectors: str) -> str:
    """The fast lab with these SendConnectors and retries a minute apart."""
    text = lab_text(send_connectors, DNS)
    assert 'RetryInterval: "00:00:01"' in text
    return text.replace('RetryInterval: "00:00:01"', 'RetryInterval: "00:01:00"')


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.config = tmp / "lab.yaml"
        self.data = tmp / "data"
        self.labs: list[RunningLab] = []
        self.mtas: list[Mta] = []

    async def lab(self, send_connectors: str) -> RunningLab:
        text = config_text(send_connectors)
        self.config.write_text(text, encoding="utf-8")
        running = await start_lab(text, self.data, source=str(self.config))
        self.labs.append(running)
        return running

    def rewrite(self, send_connectors: str | None = None, text: str | None = None) -> None:
        self.config.write_text(text if text is not None else config_text(send_connectors or ""),
                               encoding="utf-8")

    async def smarthost(self, running: RunningLab) -> Mta:
        mta = await Mta(SMARTHOST, running.port(25), name="smarthost.lab.example").start()
        self.mtas.append(mta)
        return mta

    async def queue(self, running: RunningLab, *args: str) -> tuple[int, str, str]:
        """``exchsim queue`` as a process, on the running lab's control socket."""
        proc = await asyncio.create_subprocess_exec(
            *EXCHSIM, "queue", "--config", str(self.config), "--data", str(self.data), *args,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), err.decode()

    async def queues(self, running: RunningLab) -> dict[str, dict[str, Any]]:
        code, out, err = await self.queue(running, "--format", "json", "get")
        assert code == 0, err
        return {q["Identity"]: q for q in json.loads(out)}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(tmp_path)
    yield made
    for mta in made.mtas:
        await mta.stop()
    for running in made.labs:
        await running.daemon.stop()


async def pending(running: RunningLab) -> list[QueuedMessage]:
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return await running.daemon.queues["EX01"].due(later, limit=100)


async def unreachable(running: RunningLab, count: int = 1) -> None:
    """Wait until ``count`` messages wait in the queue for want of a send connector."""
    for _ in range(200):
        if sum(m.last_error == UNREACHABLE_REASON for m in await pending(running)) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message in Unreachable: {await pending(running)}")


async def settled(running: RunningLab) -> list[QueuedMessage]:
    """The queue once the delivery agent has recorded its last delivery (the smart host holds
    the message as soon as its DATA reply is sent; the queue record goes a moment later): what
    is still pending after at most DEADLINE seconds."""
    left = await pending(running)
    for _ in range(int(DEADLINE / 0.05)):
        if not left:
            break
        await asyncio.sleep(0.05)
        left = await pending(running)
    return left


async def delivered(running: RunningLab, mta: Mta, count: int, since: float) -> float:
    """Seconds from ``since`` until ``mta`` holds ``count`` messages (at most DEADLINE)."""
    loop = asyncio.get_running_loop()
    await running.wait_for(lambda: len(mta.messages) >= count, timeout=DEADLINE)
    return loop.time() - since


async def test_a_connector_written_into_the_file_delivers_the_unreachable_message(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exchsim.reload")
    running = await harness.lab("[]")
    smarthost = await harness.smarthost(running)
    await submit(running.port(587), "user@fabrikam.example", "waits for a connector")
    await unreachable(running)
    queues = await harness.queues(running)  # exchsim queue get: the Unreachable queue
    assert (queues["EX01\\Unreachable"]["MessageCount"],
            queues["EX01\\Unreachable"]["DeliveryType"]) == (1, "Unreachable")
    changed = asyncio.get_running_loop().time()
    harness.rewrite(TO_FABRIKAM)
    took = await delivered(running, smarthost, 1, changed)
    assert smarthost.messages[0].rcpt_tos == ["user@fabrikam.example"]
    assert took < DEADLINE
    assert await settled(running) == []
    assert "EX01\\Unreachable" not in await harness.queues(running)
    assert running.daemon.reloader.reloads == 1
    (line,) = [r.getMessage() for r in caplog.records if "reloaded" in r.getMessage()]
    assert line == (f"{harness.config} reloaded: send connector(s) added: To Fabrikam; "
                    "1 message(s) routed again")


async def test_a_broken_file_is_refused_and_the_lab_keeps_delivering_with_what_it_has(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    running = await harness.lab(TO_FABRIKAM)
    smarthost = await harness.smarthost(running)
    harness.rewrite(TO_FABRIKAM.replace("AddressSpaces", "Port: 70000\n    AddressSpaces"))
    await running.wait_for(lambda: running.daemon.reloader.refused == 1, timeout=DEADLINE)
    errors = [r.getMessage() for r in caplog.records
              if r.name == "exchsim.reload" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith(f"{harness.config}: not reloaded, 1 problem(s): "
                                f"{harness.config}: SendConnectors[0]")
    assert "Port" in errors[0] and "70000" in errors[0]
    assert errors[0].endswith("the lab keeps the configuration it runs with")
    await asyncio.sleep(2 * reload.POLL)  # the same bad file is not reported again
    assert running.daemon.reloader.refused == 1
    # The lab runs on, with the connector it has.
    await submit(running.port(587), "user@fabrikam.example", "still routed")
    await running.wait_for(lambda: len(smarthost.messages) == 1, timeout=DEADLINE)
    assert not running.daemon.failed.is_set()
    assert running.daemon.reloader.reloads == 0


async def test_a_removed_connector_sends_new_mail_to_unreachable(harness: Harness) -> None:
    running = await harness.lab(TO_FABRIKAM)
    smarthost = await harness.smarthost(running)
    await submit(running.port(587), "user@fabrikam.example", "before")
    await running.wait_for(lambda: len(smarthost.messages) == 1, timeout=DEADLINE)
    harness.rewrite("[]")
    await running.wait_for(lambda: running.daemon.reloader.reloads == 1, timeout=DEADLINE)
    await submit(running.port(587), "user@fabrikam.example", "after")
    await unreachable(running)
    assert (await harness.queues(running))["EX01\\Unreachable"]["MessageCount"] == 1
    await asyncio.sleep(1.0)
    assert len(smarthost.messages) == 1


async def test_retry_queue_resubmit_reads_the_file_and_routes_with_it(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reload, "POLL", 3600.0)  # no look at the file but the command's
    running = await harness.lab("[]")
    smarthost = await harness.smarthost(running)
    await submit(running.port(587), "user@fabrikam.example", "resubmitted")
    await unreachable(running)
    harness.rewrite(TO_FABRIKAM)
    await asyncio.sleep(1.0)
    assert smarthost.messages == [] and running.daemon.reloader.reloads == 0
    code, out, err = await harness.queue(running, "retry", "EX01\\Unreachable", "--resubmit")
    assert code == 0, err
    assert "1 message(s) retried now" in out
    await running.wait_for(lambda: len(smarthost.messages) == 1, timeout=DEADLINE)
    assert running.daemon.reloader.reloads == 1


async def test_a_changed_connector_routes_its_queue_again_at_once(harness: Harness) -> None:
    running = await harness.lab(TO_FABRIKAM.replace("[smarthost.lab.example]",
                                                    '["[127.0.10.71]"]'))
    smarthost = await harness.smarthost(running)  # on .70; the connector points at .71
    await submit(running.port(587), "user@fabrikam.example", "wrong smart host")
    for _ in range(200):
        found = await pending(running)
        if found and found[0].last_error and "127.0.10.71" in found[0].last_error:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"not in Retry for 127.0.10.71: {await pending(running)}")
    (retry,) = [q for q in (await harness.queues(running)).values()
                if q["NextHopConnector"] == "To Fabrikam"]
    assert retry["Status"] == "Retry"
    changed = asyncio.get_running_loop().time()
    harness.rewrite(TO_FABRIKAM)
    assert await delivered(running, smarthost, 1, changed) < DEADLINE


async def test_sighup_reads_the_file_at_once(tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(config_text("[]"), encoding="utf-8")
    for _ in range(5):
        proc = await asyncio.create_subprocess_exec(
            *EXCHSIM, "lab", "--config", str(config), "--data", str(tmp_path / "data"),
            "--port-offset", str(port_offset()), "--log-level", "INFO", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        seen: list[str] = []
        while (line := await asyncio.wait_for(proc.stdout.readline(), 30)) and \
                line.strip() != b"exchsim: ready":
            seen.append(line.decode("utf-8", "replace"))
        if line:
            break
        await proc.wait()
        assert any("address already in use" in s for s in seen), seen
    else:
        raise AssertionError("no free port offset found")
    try:
        proc.send_signal(signal.SIGHUP)  # an unchanged file: read again only when asked
        while b"read again; nothing changed" not in (
                line := await asyncio.wait_for(proc.stdout.readline(), 10)):
            assert line, "exchsim stopped"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_a_receive_connector_change_waits_for_a_restart_and_says_so(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    running = await harness.lab(TO_FABRIKAM)
    text = config_text(TO_FABRIKAM)
    old = '  - {Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:00"'
    assert old in text
    harness.rewrite(text=text.replace(old, old.replace(
        "Server: EX01,", 'Server: EX01, Banner: "220 changed banner",')))
    await running.wait_for(lambda: any("restarted" in r.getMessage() for r in caplog.records),
                           timeout=DEADLINE)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
               and r.name == "exchsim.reload"]
    assert line == (f"{harness.config}: ReceiveConnectors changed; that takes effect when the "
                    "lab is restarted (a running lab reloads SendConnectors, Dns, "
                    "Organization.TransportConfig.TLSSendDomainSecureList)")
    assert running.daemon.reloader.reloads == 0

    def greeting() -> str:
        client = smtplib.SMTP(timeout=10)
        try:
            _, text = client.connect("127.0.10.1", running.port(25))
            return text.decode()
        finally:
            client.close()

    banner = await asyncio.to_thread(greeting)
    assert "Microsoft ESMTP MAIL Service ready" in banner  # the listener keeps its connector


async def test_a_file_changed_while_the_lab_starts_is_taken(harness: Harness) -> None:
    harness.rewrite(TO_FABRIKAM)  # the file already differs from what the lab is started with
    running = await start_lab(config_text("[]"), harness.data, source=str(harness.config))
    harness.labs.append(running)
    await running.wait_for(lambda: running.daemon.reloader.reloads == 1, timeout=DEADLINE)
    assert [c.name for c in running.daemon.agents["EX01"].lab.send_connectors] == [
        "To Fabrikam"]


SECURE_DNS = """
  MX:
    fabrikam.example:
      - {Preference: 10, NameExchange: mx.fabrikam.example}
  A:
    mx.fabrikam.example: 127.0.10.61
"""
SECURE = """
  - {Name: To Fabrikam, AddressSpaces: ["fabrikam.example"], DomainSecureEnabled: true}
"""


async def test_tls_send_domain_secure_list_applies_to_the_next_message(
        harness: Harness) -> None:
    text = lab_text(SECURE, SECURE_DNS).replace('RetryInterval: "00:00:01"',
                                                'RetryInterval: "00:01:00"')
    listed = "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}"
    assert listed in text
    harness.config.write_text(text, encoding="utf-8")
    running = await start_lab(text, harness.data, source=str(harness.config))
    harness.labs.append(running)
    mx = await Mta("127.0.10.61", running.port(25), name="mx.fabrikam.example").start()
    harness.mtas.append(mx)  # no STARTTLS
    await submit(running.port(587), "user@fabrikam.example", "not listed")
    await running.wait_for(lambda: len(mx.messages) == 1, timeout=DEADLINE)
    assert not mx.messages[0].tls  # not in the list: the connector's own settings
    harness.rewrite(text=text.replace(listed, listed.replace(
        "}", ", TLSSendDomainSecureList: [fabrikam.example]}")))
    await running.wait_for(lambda: running.daemon.reloader.reloads == 1, timeout=DEADLINE)
    await submit(running.port(587), "user@fabrikam.example", "listed")
    for _ in range(200):
        found = [m for m in await pending(running) if m.last_error]
        if found:
            break
        await asyncio.sleep(0.05)
    assert found and "STARTTLS is required" in (found[0].last_error or ""), found
    assert len(mx.messages) == 1  # never in clear


async def test_the_partner_organization_reloads_its_own_file(tmp_path: Path) -> None:
    # The running lab is configs/single-server.yaml (SEED001_YAML), written where it runs from.
    for name, shipped in (("lab.yaml", "single-server.yaml"), ("partner.yaml", "partner.yaml")):
        (tmp_path / name).write_text((CONFIGS / shipped).read_text(encoding="utf-8"),
                                     encoding="utf-8")
    running = await start_lab(fast(SEED001_YAML), tmp_path / "data",
                              source=str(tmp_path / "lab.yaml"))
    try:
        (partner,) = running.daemon.partners
        assert partner.reloader.path == tmp_path / "partner.yaml"
        text = (tmp_path / "partner.yaml").read_text(encoding="utf-8")
        (tmp_path / "partner.yaml").write_text(
            text.replace("SMTP:contoso.com;1", "SMTP:contoso.com;5"), encoding="utf-8")
        await running.wait_for(lambda: partner.reloader.reloads == 1, timeout=DEADLINE)
        assert [s.cost for c in partner.agents["PARTNER01"].lab.send_connectors
                for s in c.address_spaces] == [5]
        assert running.daemon.reloader.reloads == 0  # Contoso's own routing is unchanged
    finally:
        await running.daemon.stop()
