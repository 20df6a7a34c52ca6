"""A real lab in the test's event loop: real listeners on 127.0.10.x with a port offset."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchsim.config.load import load_config_text
from exchsim.config.model import Lab
from exchsim.daemon import LabDaemon

ROOT = Path(__file__).resolve().parents[2]
from tests.labyaml import CONFIGS, SEED001_YAML, single_organization  # noqa: E402,F401


def fast(text: str) -> str:
    """Queue retries every second in tests (the lab's default is 10 s)."""
    return text.replace(
        "  InternetSink: {Address: 127.0.10.250, Port: 25}",
        '  InternetSink: {Address: 127.0.10.250, Port: 25}\n  RetryInterval: "00:00:01"',
    )


LAB_YAML = single_organization(SEED001_YAML)
FAST_LAB_YAML = fast(LAB_YAML)

# Tests that do not test tarpitting turn it off; hop connectors log verbosely.
FAST = """
  - {Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00"}
  - {Name: Client Frontend EX01, Server: EX01, TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00"}
  - {Name: Outbound Proxy Frontend EX01, Server: EX01, TarpitInterval: "00:00:00"}
  - {Name: Default EX01, Server: EX01, TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00", ProtocolLoggingLevel: Verbose}
  - {Name: Client Proxy EX01, Server: EX01, TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00", ProtocolLoggingLevel: Verbose}
  - {Name: Mailbox Delivery EX01, Server: EX01, TarpitInterval: "00:00:00", ProtocolLoggingLevel: Verbose}
"""


def with_connectors(base: str, connectors: str) -> str:
    """Append ReceiveConnectors entries to a config text (adding the section if needed)."""
    if "\nReceiveConnectors:" in base:
        head, _, tail = base.partition("\nReceiveConnectors:")
        first, sep, rest = tail.partition("\n")
        return head + "\nReceiveConnectors:" + first + "\n" + connectors.strip("\n") + "\n" + rest
    return base.rstrip("\n") + "\nReceiveConnectors:\n" + connectors.strip("\n") + "\n"


@dataclass
class RunningLab:
    lab: Lab
    daemon: LabDaemon
    data: Path
    offset: int

    def port(self, port: int) -> int:
        return port + self.offset

    def mailbox(self, address: str) -> list[bytes]:
        folder = self.data / "mailboxes" / address.lower() / "new"
        return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.exists() else []

    def internet(self, address: str) -> list[bytes]:
        folder = self.data / "internet" / address.lower() / "new"
        return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.exists() else []

    def protocol_log(self) -> str:
        folder = self.data / "logs" / "EX01" / "ProtocolLog" / "SmtpReceive"
        if not folder.exists():
            return ""
        return "".join(p.read_bytes().decode("utf-8") for p in sorted(folder.iterdir()))

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)


def port_offset() -> int:
    """A random --port-offset whose lab ports (25 to 2525 plus the offset) stay below Linux's
    ephemeral range (32768 and up): no outgoing connection, not even a hop client bound to a
    server's address, can then be holding one of them."""
    return random.randrange(1000, 30000, 10)


async def start_lab(text: str, data: Path, source: str = "test.yaml") -> RunningLab:
    lab = load_config_text(text, source)
    for _ in range(20):
        offset = port_offset()
        daemon = LabDaemon(lab, data, port_offset=offset)
        try:
            await daemon.start()
        except OSError:
            continue
        return RunningLab(lab, daemon, data, offset)
    raise RuntimeError("no free port offset found")


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[RunningLab]:
    running = await start_lab(with_connectors(FAST_LAB_YAML, FAST), tmp_path / "data")
    yield running
    await running.daemon.stop()


def swaks_available() -> bool:
    return shutil.which("swaks") is not None


async def swaks(*args: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run swaks (Debian package) and return (exit code, full transcript)."""
    assert swaks_available(), "swaks is required: apt-get install -y swaks"
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--hide-informational", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "LC_ALL": "C"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode("utf-8", "replace")


class RawClient:
    """A byte-level SMTP client for what library clients refuse to send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, source: str | None = None) -> RawClient:
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(source, 0) if source else None)
        return cls(reader, writer)

    async def reply(self, timeout: float = 10.0) -> str:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)
            text = line.decode().rstrip("\r\n")
            lines.append(text)
            if text[3:4] != "-":
                return "\r\n".join(lines)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def cmd(self, line: str) -> str:
        await self.send(line + "\r\n")
        return await self.reply()

    async def closed(self, timeout: float = 5.0) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout)
        except (ConnectionError, TimeoutError):
            return False
        return data == b""

    def close(self) -> None:
        self.writer.close()
