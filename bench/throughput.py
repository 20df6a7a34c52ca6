"""Throughput of the whole chain against a bare aiosmtpd server, in the same run.

    python bench/throughput.py [--seconds 10] [--clients 20] [--size 1024] [--new-connection]

Starts ``exchsim lab`` (configs/single-server.yaml, fresh data directory, a port offset) and a bare
aiosmtpd server (a handler that answers 250 and stores nothing), each in its own process,
then drives each with the same load: N concurrent clients (aiosmtplib), each on one
connection sending 1 KB messages to alice@contoso.com for a fixed time (with
``--new-connection``, a new connection for every message, as MTAs and smtplib.sendmail do:
connect, EHLO, MAIL, RCPT, DATA, QUIT). For exchsim every
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
import resource
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


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and every live descendant."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]),
                                  (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]
    errors: int
    client_cpu: float = 0.0
    server_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        lat = sorted(self.latencies) or [0.0]
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        per = 1000 / self.messages if self.messages else 0.0
        return (f"{self.name:<28} {self.rate:8.1f} msg/s   p50 {p50:7.1f} ms   "
                f"p99 {p99:7.1f} ms   ({self.messages} messages, {self.errors} errors; "
                f"CPU per message: server {self.server_cpu * per:.2f} ms, "
                f"client {self.client_cpu * per:.2f} ms)")


async def drive(name: str, host: str, port: int, clients: int, seconds: float,
                size: int, new_connection: bool = False) -> Result:
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
                    if new_connection and i > 1:
                        await smtp.connect()
                    await smtp.sendmail("bench@fabrikam.example", ["alice@contoso.com"], message)
                    if new_connection:
                        await smtp.quit()
                except aiosmtplib.SMTPException:
                    errors += 1
                    if new_connection and smtp.is_connected:
                        smtp.close()
                    continue
                latencies.append(time.monotonic() - start)
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                if smtp.is_connected:
                    await smtp.quit()

    started = time.monotonic()
    cpu = own_cpu()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return Result(name, len(latencies), time.monotonic() - started, latencies, errors,
                  client_cpu=own_cpu() - cpu)


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


async def wait_delivered(folder: Path, expected: int, limit: float) -> tuple[int, float]:
    """Wait (at most ``limit`` s) until ``expected`` messages are in the Maildir."""
    deadline = time.monotonic() + limit
    count = 0
    while time.monotonic() < deadline:
        try:
            count = len(os.listdir(folder))
        except FileNotFoundError:
            count = 0
        if count >= expected:
            break
        await asyncio.sleep(0.05)
    return count, time.monotonic()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--only", choices=["bare", "chain"], help="run one side (profiling)")
    parser.add_argument("--new-connection", action="store_true",
                        help="a new connection for every message (connect ... QUIT)")
    args = parser.parse_args()
    offset = random.randrange(1000, 30000, 10)  # ports below the ephemeral range
    base = chain = None
    with tempfile.TemporaryDirectory(prefix="exchsim-bench-") as tmp:
        if args.only != "chain":
            bare_port = 10000 + offset % 10000 + 7
            bare = await start_process([sys.executable, "-c", BARE_SERVER, str(bare_port)],
                                       b"ready")
            try:
                cpu = tree_cpu(bare.pid)
                base = await drive("bare aiosmtpd", "127.0.0.1", bare_port, args.clients,
                                   args.seconds, args.size, args.new_connection)
                base.server_cpu = tree_cpu(bare.pid) - cpu
            finally:
                await stop_process(bare)
        if args.only != "bare":
            lab = await start_process(
                [sys.executable, "-m", "exchsim.cli", "lab",
                 "--config", "configs/single-server.yaml", "--data", tmp,
                 "--port-offset", str(offset)], b"exchsim: ready")
            try:
                cpu = tree_cpu(lab.pid)
                started = time.monotonic()
                chain = await drive("exchsim, accepted (250)", "127.0.10.1", 25 + offset,
                                    args.clients, args.seconds, args.size, args.new_connection)
                # The chain ends in the Maildir: wait for the hub's queue to drain, and count
                # the rate into the mailbox over the whole time until the last delivery.
                delivered, ended = await wait_delivered(
                    Path(tmp) / "mailboxes" / "alice@contoso.com" / "new", chain.messages,
                    limit=max(30.0, args.seconds * 3))
                chain.server_cpu = tree_cpu(lab.pid) - cpu
            finally:
                await stop_process(lab)
            into_mailbox = Result("exchsim, into the Maildir", delivered, ended - started,
                                  [], 0, chain.client_cpu, chain.server_cpu)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {args.clients} clients, {args.size} B messages, "
          f"{args.seconds:.0f} s each, "
          f"{'a new connection per message' if args.new_connection else 'one connection each'}")
    if base:
        print(base.line())
    if chain:
        print(chain.line())
        print(f"{into_mailbox.name:<28} {into_mailbox.rate:8.1f} msg/s   ({delivered} of "
              f"{chain.messages} in the Maildir {into_mailbox.seconds:.1f} s after the start)")
    if base and chain:
        print(f"ratio exchsim / bare aiosmtpd: {into_mailbox.rate / base.rate:.2f} into the "
              f"Maildir ({chain.rate / base.rate:.2f} accepted)")


if __name__ == "__main__":
    asyncio.run(main())
