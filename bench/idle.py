"""Memory of idle connections: N clients connect, read the banner and say nothing.

    python bench/idle.py [--connections 5000]

Starts ``exchsim lab`` (configs/single-server.yaml with Default Frontend's limits raised so that N
connections from one address are admitted) and, in the same run, a bare aiosmtpd server,
each in its own process; opens N connections to each, waits for every banner, and reads the
server's resident memory (VmRSS) before and after. Prints MB in all and KB per connection, and
the ratio to bare aiosmtpd. The project's target: 5,000 idle connections in at most 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import BARE_SERVER, ROOT, start_process, stop_process

LIMITS = """
ReceiveConnectors:
  - {Name: Default Frontend EX01, Server: EX01, MaxInboundConnection: 50000,
     MaxInboundConnectionPerSource: unlimited, MaxInboundConnectionPercentagePerSource: 100}
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def hold(host: str, port: int, count: int) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        line = await asyncio.wait_for(reader.readline(), 60)
        if not line.startswith(b"220"):
            raise RuntimeError(f"no banner: {line!r}")
        writers.append(writer)

    for start in range(0, count, 100):  # waves of the listen backlog (100): no SYN retries
        await asyncio.gather(*(one() for _ in range(start, min(count, start + 100))))
    return writers


async def measure(name: str, pid: int, host: str, port: int, count: int) -> tuple[float, float]:
    await asyncio.sleep(0.5)
    before = rss_mb(pid)
    writers = await hold(host, port, count)
    await asyncio.sleep(1.0)
    after = rss_mb(pid)
    for writer in writers:
        writer.close()
    print(f"{name:<16} {before:7.1f} MB idle -> {after:7.1f} MB with {count} connections "
          f"({(after - before) * 1024 / count:5.1f} KB per connection)")
    return before, after


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=5000)
    args = parser.parse_args()
    offset = random.randrange(1000, 30000, 10)  # ports below the ephemeral range
    with tempfile.TemporaryDirectory(prefix="exchsim-idle-") as tmp:
        bare_port = 10000 + offset % 10000 + 7
        bare = await start_process([sys.executable, "-c", BARE_SERVER, str(bare_port)], b"ready")
        try:
            _, bare_after = await measure("bare aiosmtpd", bare.pid, "127.0.0.1", bare_port,
                                          args.connections)
        finally:
            await stop_process(bare)
        config = Path(tmp) / "lab.yaml"
        config.write_text((ROOT / "configs" / "single-server.yaml").read_text() + LIMITS)
        lab = await start_process(
            [sys.executable, "-m", "exchsim.cli", "lab", "--config", str(config),
             "--data", str(Path(tmp) / "data"), "--port-offset", str(offset)],
            b"exchsim: ready")
        try:
            _, lab_after = await measure("exchsim (25)", lab.pid, "127.0.10.1", 25 + offset,
                                         args.connections)
        finally:
            with contextlib.suppress(ProcessLookupError):
                await stop_process(lab)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; "
          f"exchsim / bare aiosmtpd resident memory: {lab_after / bare_after:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
