"""Clients that leave without QUIT leave no socket behind in ``exchsim lab``.

A real ``exchsim lab`` process (configs/single-server.yaml, a port offset) takes 1,000 connections on
each of its six listeners from a raw client that closes without QUIT: after reading the 220
banner, after EHLO and its reply, or before reading anything. Then, within a few seconds, the
server must hold no socket in CLOSE-WAIT (``ss -tanp`` filtered by its pid: a socket whose peer
has closed and which the server never closed) and exactly as many file descriptors as before
the load (``/proc/PID/fd``).

The descriptor count to come back to is taken after one clean session (banner, QUIT) on each
listener: the first session opens the server's protocol log file, which then stays open; it is
the only thing opened on first use, so the count after those sessions is the steady state and
the comparison allows no slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, port_offset

HOST = "127.0.10.1"
PORTS = (25, 587, 717, 2525, 465, 475)  # the six listeners of EX01 in configs/single-server.yaml
CONNECTIONS = 1000  # per listener
SETTLE = 5.0  # seconds the server gets to close what its clients left


class LabProcess:
    """``exchsim lab`` as a subprocess; its output is drained so that it never blocks."""

    def __init__(self, proc: asyncio.subprocess.Process, offset: int, lines: list[str]) -> None:
        self.proc, self.offset, self.lines = proc, offset, lines
        self._drain = asyncio.get_running_loop().create_task(self._read_rest())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def listeners(self) -> int:
        """How many listeners the lab said it opened (configs/single-server.yaml: 14)."""
        return sum(1 for line in self.lines if " listening on " in line)

    async def _read_rest(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode("utf-8", "replace").rstrip())

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(self.proc.wait(), 30)
        await self._drain


async def start_lab(data: Path, config: str = "configs/single-server.yaml") -> LabProcess:
    for _ in range(5):
        offset = port_offset()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exchsim.cli", "lab", "--config", config,
            "--data", str(data), "--port-offset", str(offset), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        lines: list[str] = []
        while line := await asyncio.wait_for(proc.stdout.readline(), 30):
            lines.append(line.decode("utf-8", "replace").rstrip())
            if lines[-1] == "exchsim: ready":
                listening = {ln.rsplit(":", 1)[1] for ln in lines if " listening on " in ln}
                assert {str(p + offset) for p in PORTS} <= listening, lines
                return LabProcess(proc, offset, lines)
        await proc.wait()
        assert any("address already in use" in ln for ln in lines), lines  # else: try again
    raise AssertionError("no free port offset found")


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[LabProcess]:
    running = await start_lab(tmp_path / "data")
    yield running
    await running.stop()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> Counter[str]:
    """Open descriptors by kind (socket, pipe, anon_inode, file), for failure messages."""
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            kinds[target.split(":", 1)[0] if ":" in target else "file"] += 1
    return kinds


def tcp_states(pid: int) -> Counter[str]:
    """States of the TCP sockets the process holds, as ``ss -tanp`` shows them."""
    out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, check=True).stdout
    return Counter(line.split()[0] for line in out.splitlines() if f"pid={pid}," in line)


async def read_reply(reader: asyncio.StreamReader) -> list[bytes]:
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
        lines.append(line)
        if line[3:4] != b"-":
            return lines


async def client(port: int, kind: str) -> None:
    """One connection that ends without QUIT: the client just closes its socket."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        if kind != "before-banner":
            banner = await read_reply(reader)
            assert banner[-1].startswith(b"220 "), banner
        if kind == "after-ehlo":
            writer.write(b"EHLO client.example\r\n")
            ehlo = await read_reply(reader)
            assert ehlo[-1].startswith(b"250 "), ehlo
    finally:
        writer.close()  # everything sent was read: a FIN, not a reset (except before-banner)
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def clean_session(port: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    await read_reply(reader)
    writer.write(b"QUIT\r\n")
    assert (await read_reply(reader))[-1].startswith(b"221 ")
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the server closed
    writer.close()
    await writer.wait_closed()


async def settled(pid: int, fds: int, timeout: float) -> tuple[bool, int, Counter[str]]:
    """Wait until no CLOSE-WAIT socket is left and the fd count is ``fds``, or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        count, states = fd_count(pid), tcp_states(pid)
        if count == fds and not states["CLOSE-WAIT"]:
            return True, count, states
        if time.monotonic() > deadline:
            return False, count, states
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("kind", ["after-banner", "after-ehlo", "before-banner"])
async def test_clients_closing_without_quit_leave_no_socket(lab: LabProcess, kind: str) -> None:
    ports = [p + lab.offset for p in PORTS]
    for port in ports:
        await clean_session(port)
    ok, fds, states = await settled(lab.pid, fd_count(lab.pid), SETTLE)
    assert ok, ("the server did not settle after one clean session per listener", fds, states)
    # EX01's six listeners, the internet sink, the CRL server and the partner's six listeners
    assert lab.listeners() == 14, lab.lines
    assert states == Counter({"LISTEN": lab.listeners()}), states

    async def one_listener(port: int) -> None:
        for _ in range(CONNECTIONS):
            await client(port, kind)

    started = time.monotonic()
    await asyncio.gather(*(one_listener(port) for port in ports))
    loaded = time.monotonic() - started

    ok, count, states = await settled(lab.pid, fds, SETTLE)
    assert ok, (
        f"{CONNECTIONS} connections ({kind}, no QUIT) to each of {PORTS} + {lab.offset} "
        f"in {loaded:.1f} s; {SETTLE} s later the server holds {count - fds} file descriptors "
        f"more than before ({fds} -> {count}: {dict(fd_kinds(lab.pid))}) and these TCP sockets: "
        f"{dict(states)}"
    )
    assert states == Counter({"LISTEN": lab.listeners()}), states
    assert lab.proc.returncode is None, lab.lines
