"""``exchsim lab`` as a process at its file-descriptor limit: stderr stays small.

Before the repeat filter (exchsim/logs/repeats.py) asyncio wrote a traceback for every failed
accept, about 5 MB a second on this test's load (1.2 GB in 30 s was measured on a faster
machine); now the first failure is written and the rest are one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import sys
from pathlib import Path

from tests.integration.conftest import LAB_YAML, ROOT, port_offset

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
NOFILE = 64  # enough to start the lab (about 30), far fewer than the connections below
CONNECTIONS = 300


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


async def _start(config: Path, data: Path, stderr: Path) -> tuple[asyncio.subprocess.Process, int]:
    for _ in range(5):
        offset = port_offset()
        with stderr.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *EXCHSIM, "lab", "--config", str(config), "--data", str(data),
                "--port-offset", str(offset), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                stderr=err, preexec_fn=_low_fd_limit)
        assert proc.stdout is not None
        while line := await asyncio.wait_for(proc.stdout.readline(), 30):
            if line.strip() == b"exchsim: ready":
                return proc, offset
        await proc.wait()
        assert "address already in use" in stderr.read_text(), stderr.read_text()
    raise AssertionError("no free port offset found")


async def _banner(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.10.1", port)
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_at_the_fd_limit_a_flood_of_accept_failures_writes_a_few_kb(
        tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(LAB_YAML, encoding="utf-8")
    stderr = tmp_path / "stderr.log"
    proc, offset = await _start(config, tmp_path / "data", stderr)
    writers: list[asyncio.StreamWriter] = []
    try:
        for batch in range(CONNECTIONS // 50):  # five times the descriptors it may open
            for n in range(50):
                # Each from its own source address: MaxInboundConnectionPerSource (20) would
                # otherwise refuse and close most of them, freeing descriptors again.
                source = f"127.0.{3 + batch}.{n + 1}"
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection(
                        "127.0.10.1", 25 + offset, local_addr=(source, 0))
                    writers.append(writer)
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)  # held: asyncio retries accept each second, and fails
        size_under_load = stderr.stat().st_size
        for writer in writers:
            writer.close()
        writers.clear()
        # The listener comes back once descriptors are free (asyncio retries accept each second).
        banner = b""
        for _ in range(50):
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                banner = await _banner(25 + offset)
            if banner.startswith(b"220 "):
                break
            await asyncio.sleep(0.2)
        assert banner.startswith(b"220 "), banner
    finally:
        for writer in writers:
            writer.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    text = stderr.read_text(encoding="utf-8", errors="replace")
    assert size_under_load < 10_000, (size_under_load, text[:3000])
    assert len(text.encode()) < 20_000, text[:3000]
    assert text.count("Traceback") <= 3, text
    assert "socket.accept() out of system resource (repeated " in text, text
    assert code == 0, text
