"""``exchsim`` as a process: config errors, ready line, clean stop, and kill -9 under load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path

import aiosmtplib

from tests.integration.conftest import LAB_YAML, ROOT, port_offset, with_connectors

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]

BAD = """
Organization:
  Name: Contoso
  AcceptedDomains:
    - {DomainName: contoso.com, DomainType: Authoritative, Default: true}
Servers:
  - {Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1}
ReceiveConnectors:
  - {Name: Relay, Server: EX01, TransportRole: FrontendTransport, Bindings: ["0.0.0.0:25"],
     RemoteIpRange: ["127.0.0.1"], AuthMechanism: [Tls, Basic]}
  - {Name: Sized, Server: EX01, Bindings: ["0.0.0.0:2527"], MaxMessageSize: 12 parsecs}
"""


async def run(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_config_with_three_mistakes_exits_2_and_names_all_three(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD, encoding="utf-8")
    for command in (["check"], ["lab", "--data", str(tmp_path / "d"), "--port-offset", "31000"]):
        code, out, err = await run(*command, "--config", str(path))
        assert code == 2, (out, err)
        assert "exchsim: ready" not in out
        assert str(path) in err
        assert "RemoteIpRange" in err and "RemoteIPRanges" in err  # did you mean
        assert "'Basic'" in err and "BasicAuth" in err
        assert ": 3 problems" in err
        assert "12 parsecs" in err
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").rglob("*.sqlite"))


async def test_check_prints_every_connector() -> None:
    code, out, _ = await run("check", "--config", "configs/single-server.yaml")
    assert code == 0
    for name in ("Default Frontend EX01", "Client Frontend EX01", "Outbound Proxy Frontend EX01",
                 "Default EX01", "Client Proxy EX01", "Mailbox Delivery EX01"):
        assert f"EX01\\{name}" in out
    assert "MaxMessageSize" in out and "37,748,736 bytes" in out


async def test_check_prints_send_connectors_like_get_sendconnector() -> None:
    code, out, err = await run("check", "--config", "configs/examples/send-connectors.yaml")
    assert code == 0, err
    assert "EX01\\Default Frontend EX01" in out  # the receive connectors first
    blocks = [b for b in out.split("\n\n") if "AddressSpaces" in b]
    assert [re.search(r"^Identity +: (.*)$", b, re.M).group(1) for b in blocks] == [  # type: ignore[union-attr]
        "To Internet", "To Partner", "Via Smarthost"]
    assert "AddressSpaces               : {SMTP:*.fabrikam.example;5}" in blocks[2]
    assert "SmartHosts                  : {smarthost.lab.example}" in blocks[2]
    assert "TlsAuthLevel                : DomainValidation" in blocks[1]
    assert "Relay-P@ss1" not in out


async def test_check_of_a_bad_send_connector_exits_2_naming_file_key_value(
    tmp_path: Path,
) -> None:
    # lab.yaml's own SendConnectors section replaced by a bad one.
    text = LAB_YAML.split("\nSendConnectors:")[0] + """
SendConnectors:
  - {Name: Out, AddressSpaces: ["*"], IgnoreSTARTTLS: true, RequireTLS: true}
"""
    path = tmp_path / "bad-send.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = await run("check", "--config", str(path))
    assert code == 2, (out, err)
    assert out == ""
    assert f"exchsim: {path}: 1 problem" in err
    assert (f"{path}: SendConnectors[0] (Out).RequireTLS: true is not allowed with IgnoreSTARTTLS "
            "true: a connector that ignores STARTTLS cannot require TLS (exchange.md §4.3)") in err


class Lab:
    def __init__(self, config: Path, data: Path, offset: int) -> None:
        self.config, self.data, self.offset = config, data, offset
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, *, may_move: bool = True) -> None:
        """Start and wait for ``exchsim: ready``. If a port of the offset is taken (another
        test run on this machine), try another offset, unless ``may_move`` is False."""
        for _ in range(5):
            self.proc = await asyncio.create_subprocess_exec(
                *EXCHSIM, "lab", "--config", str(self.config), "--data", str(self.data),
                "--port-offset", str(self.offset), cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            assert self.proc.stdout is not None
            seen = []
            while True:
                line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
                if line.strip() == b"exchsim: ready":
                    return
                if not line:
                    break
                seen.append(line.decode("utf-8", "replace").strip())
            await self.proc.wait()
            assert may_move and any("address already in use" in s for s in seen), (
                f"exchsim exited before it was ready: {seen}")
            self.offset = port_offset()
        raise AssertionError("no free port offset found")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)


async def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(LAB_YAML, encoding="utf-8")
    lab = Lab(config, tmp_path / "data", port_offset())
    await lab.start()
    assert await lab.stop() == 0


def subjects(folder: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    new = folder / "new"
    if new.exists():
        for path in new.iterdir():
            match = re.search(rb"^Subject: (load-\d+)\r$", path.read_bytes(), re.MULTILINE)
            if match:
                found[match.group(1).decode()] += 1
    return found


async def test_kill_9_under_load_loses_nothing_that_got_250(tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(with_connectors(LAB_YAML, """
  - {Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:00"}
"""), encoding="utf-8")
    data = tmp_path / "data"
    lab = Lab(config, data, port_offset())
    await lab.start()
    accepted: list[str] = []
    stop = asyncio.Event()

    async def sender(worker: int) -> None:
        n = 0
        while not stop.is_set() and n < 60:
            subject = f"load-{worker:02}{n:03}"
            n += 1
            message = f"Subject: {subject}\r\nFrom: a@fabrikam.example\r\n\r\n{'x' * 900}\r\n"
            try:
                _, reply = await aiosmtplib.send(
                    message, sender="a@fabrikam.example", recipients=["alice@contoso.com"],
                    hostname="127.0.10.1", port=25 + lab.offset, timeout=10,
                    start_tls=False)
            except (aiosmtplib.SMTPException, OSError):
                continue
            if "Queued mail for delivery" in reply:
                accepted.append(subject)

    tasks = [asyncio.create_task(sender(w)) for w in range(10)]
    while len(accepted) < 150 and not all(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    lab.kill9()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(ProcessLookupError):
        await lab.stop()
    assert len(accepted) >= 100
    restarted = Lab(config, data, lab.offset)
    await restarted.start(may_move=False)  # the same ports: the clients' view of the server
    try:
        folder = data / "mailboxes" / "alice@contoso.com"
        deadline = asyncio.get_running_loop().time() + 60
        while not set(accepted) <= set(subjects(folder)):
            assert asyncio.get_running_loop().time() < deadline, (
                f"missing: {sorted(set(accepted) - set(subjects(folder)))[:10]}")
            await asyncio.sleep(0.2)
    finally:
        await restarted.stop()
    delivered = subjects(folder)
    duplicates = sum(count - 1 for count in delivered.values() if count > 1)
    print(f"accepted with 250: {len(accepted)}, delivered: {len(delivered)}, "
          f"duplicates: {duplicates}")
    assert set(accepted) <= set(delivered)
    assert os.path.exists(data / "queue" / "EX01.sqlite")


async def test_serve_runs_one_server_without_the_sink(tmp_path: Path) -> None:
    offset = port_offset()
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "serve", "--config", "configs/single-server.yaml", "--server", "EX01",
        "--data", str(tmp_path / "data"), "--port-offset", str(offset), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    lines = []
    while not lines or lines[-1] != "exchsim: ready":
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, lines
        lines.append(line.decode().strip())
    try:
        assert not any("InternetSink" in line or "PARTNER01" in line for line in lines)
        assert f"exchsim: EX01 listening on 127.0.10.1:{25 + offset}" in lines
        reader, writer = await asyncio.open_connection("127.0.10.1", 25 + offset)
        # The shipped lab's Default Frontend answers as mail.contoso.com (seed 001).
        assert (await reader.readline()).startswith(b"220 mail.contoso.com Microsoft ESMTP")
        writer.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
