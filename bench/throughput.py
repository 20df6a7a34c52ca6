"""Throughput of the whole chain against a bare aiosmtpd server, in the same run.

    python bench/throughput.py [--seconds 10] [--clients 20] [--size 1024]

Starts ``exchsim lab`` (configs/lab.yaml, fresh data directory, a port offset) and a bare
aiosmtpd server (a handler that answers 250 and stores nothing), each in its own process,
then drives each with the same load: N concurrent clients (aiosmtplib), each on one
connection sending 1 KB messages to alice@contoso.com for a fixed time. For exchsim every
message crosses the whole chain: Front End (25) -> hub (2525, SQLite commit with fsync) ->
Mailbox Transport Delivery (475) -> Maildir (fsync). Prints messages/s and p50/p99 latency of
each, and the ratio exchsim / bare. The load stops at the time limit; both servers are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib

ROOT = Path(__file__).resolve().parents[1]
BARE_SERVER = """
import asyncio, sys
from aiosmtpd.smtp import SMTP
class H:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTP(H(), hostname="bare"), "127.0.0.1",
                                   int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        return (f"{self.name:<28} {self.rate:8.1f} msg/s   p50 {p50:7.1f} ms   "
                f"p99 {p99:7.1f} ms   ({self.messages} messages, {self.errors} errors)")


async def drive(name: str, host: str, port: int, clients: int, seconds: float,
                size: int) -> Result:
    body = "x" * max(size - 100, 10)
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        smtp = aiosmtplib.SMTP(hostname=host, port=port, timeout=30, start_tls=False)
        await smtp.connect()
        i = 0
        try:
            while time.monotonic() < deadline:
                i += 1
                message = (f"From: bench@fabrikam.example\r\nTo: alice@contoso.com\r\n"
                           f"Subject: bench {n}-{i}\r\n\r\n{body}\r\n")
                start = time.monotonic()
                try:
                    await smtp.sendmail("bench@fabrikam.example", ["alice@contoso.com"], message)
                except aiosmtplib.SMTPException:
                    errors += 1
                    continue
                latencies.append(time.monotonic() - start)
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await smtp.quit()

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return Result(name, len(latencies), time.monotonic() - started, latencies, errors)


async def start_process(args: list[str], ready: bytes) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"{args} exited before it was ready")
        if line.strip() == ready:
            return proc


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    offset = random.randrange(20000, 40000, 10)
    with tempfile.TemporaryDirectory(prefix="exchsim-bench-") as tmp:
        bare_port = 10000 + offset % 10000 + 7
        bare = await start_process([sys.executable, "-c", BARE_SERVER, str(bare_port)], b"ready")
        try:
            base = await drive("bare aiosmtpd", "127.0.0.1", bare_port, args.clients,
                               args.seconds, args.size)
        finally:
            await stop_process(bare)
        lab = await start_process(
            [sys.executable, "-m", "exchsim.cli", "lab", "--config", "configs/lab.yaml",
             "--data", tmp, "--port-offset", str(offset)], b"exchsim: ready")
        try:
            chain = await drive("exchsim FE->hub->475", "127.0.10.1", 25 + offset,
                                args.clients, args.seconds, args.size)
        finally:
            await stop_process(lab)
        delivered = len(os.listdir(Path(tmp) / "mailboxes" / "alice@contoso.com" / "new"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {args.clients} clients, {args.size} B messages, "
          f"{args.seconds:.0f} s each")
    print(base.line())
    print(chain.line())
    print(f"delivered to the Maildir by the end: {delivered} of {chain.messages}")
    print(f"ratio exchsim / bare aiosmtpd: {chain.rate / base.rate:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
