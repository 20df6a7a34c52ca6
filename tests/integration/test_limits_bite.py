"""Exchange's limits where Exchange enforces them, on real sessions (issue 7, finding 4).

- ConnectionTimeout holds in every state, DATA and BDAT included;
- ConnectionInactivityTimeout counts from the last byte received, not from the start of a line;
- past MaxRecipientsPerMessage the replies keep coming (no wait per pipelined line);
- each listener's backlog has room for MaxInboundConnection connections.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RawClient,
    start_lab,
    with_connectors,
)

HOST = "127.0.10.1"

TIMERS = """
  - {Name: Default Frontend EX01, Server: EX01, ConnectionInactivityTimeout: "00:00:01",
     ConnectionTimeout: "00:00:03", TarpitInterval: "00:00:01", MaxRecipientsPerMessage: 2}
"""


async def dribble(client: RawClient, data: bytes, every: float) -> None:
    for i in range(len(data)):
        await client.send(data[i : i + 1])
        await asyncio.sleep(every)


async def test_timers_count_from_the_last_byte_and_hold_in_data(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, TIMERS), tmp_path / "data")
    try:
        # A command typed slowly (a byte every 0.4 s, 2.4 s for the line) is not idle.
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        await dribble(client, b"NOOP\r\n", 0.4)
        assert await client.reply() == "250 2.0.0 OK"
        client.close()
        # A byte every 0.5 s in DATA keeps the session active, but not past ConnectionTimeout.
        for start in (b"DATA\r\n", b"BDAT 1000\r\n"):
            client = await RawClient.connect(HOST, lab.port(25))
            await client.reply()
            began = time.monotonic()
            await client.cmd("EHLO client.example")
            await client.cmd("MAIL FROM:<a@fabrikam.example>")
            await client.cmd("RCPT TO:<alice@contoso.com>")
            await client.send(start)
            if start.startswith(b"DATA"):
                assert (await client.reply()).startswith("354")
            dripping = asyncio.create_task(dribble(client, b"x" * 20, 0.5))
            try:
                assert await client.reply(timeout=6) == "421 4.4.1 Connection timed out"
            finally:
                dripping.cancel()
            assert 2.5 < time.monotonic() - began < 4.5
            assert await client.closed()
    finally:
        await lab.daemon.stop()


async def test_recipients_past_the_limit_get_their_replies_at_once(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, TIMERS), tmp_path / "data")
    try:
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        await client.cmd("EHLO client.example")
        began = time.monotonic()
        await client.send(b"MAIL FROM:<a@fabrikam.example>\r\n" + b"".join(
            b"RCPT TO:<r%d@contoso.com>\r\n" % n for n in range(1000)))
        replies = [await client.reply() for _ in range(1001)]
        assert replies.count("250 2.1.5 Recipient OK") == 2
        assert replies.count("452 4.5.3 Too many recipients") == 998
        assert time.monotonic() - began < 2.5  # one TarpitInterval (1 s), not 998
        client.close()
    finally:
        await lab.daemon.stop()


async def test_listen_backlog_has_room_for_max_inbound_connection(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, FAST), tmp_path / "data")
    try:
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        proc = await asyncio.create_subprocess_exec(
            "ss", "-ltnH", f"src {HOST}:{lab.port(25)}", stdout=asyncio.subprocess.PIPE)
        stdout, _ = await proc.communicate()
        out = stdout.decode().split()
        assert len(out) == 5, out  # one listening socket
        # ss shows a listening socket's backlog in the Send-Q column (the third).
        assert int(out[2]) == min(5000, somaxconn), out
    finally:
        await lab.daemon.stop()
