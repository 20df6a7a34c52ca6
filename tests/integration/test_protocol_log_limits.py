"""The receive protocol log of a running lab stays within its server's limits (exchange.md §6.1)."""

from __future__ import annotations

import re
from pathlib import Path

import aiosmtplib

from tests.integration.conftest import FAST, FAST_LAB_YAML, start_lab, with_connectors

SERVER = '{Name: EX01, Role: Mailbox, Fqdn: ex01.contoso.com, Address: 127.0.10.1, Version: "15.2"}'
LIMITS = "ReceiveProtocolLogMaxFileSize: 4KB, ReceiveProtocolLogMaxDirectorySize: 16KB"


async def test_the_lab_rolls_its_protocol_log_and_keeps_the_directory_small(
        tmp_path: Path) -> None:
    assert SERVER in FAST_LAB_YAML
    text = with_connectors(FAST_LAB_YAML.replace(SERVER, SERVER[:-1] + ", " + LIMITS + "}"), FAST)
    folder = tmp_path / "data" / "logs" / "EX01" / "ProtocolLog" / "SmtpReceive"
    folder.mkdir(parents=True)
    (folder / "RECV2001010100-1.LOG").write_bytes(b"x" * 3000)  # left by an earlier run, old
    lab = await start_lab(text, tmp_path / "data")
    try:
        assert not (folder / "RECV2001010100-1.LOG").exists()  # deleted at start (30 days)
        for n in range(15):
            await aiosmtplib.send(
                f"Subject: {n}\r\n\r\nhello\r\n".encode(), sender="someone@fabrikam.example",
                recipients=["alice@contoso.com"], hostname="127.0.10.1", port=lab.port(25),
                start_tls=False)
        await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 15)
    finally:
        await lab.daemon.stop()
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    numbers = [int(m[1]) for name in sizes if (m := re.fullmatch(r"RECV\d{10}-(\d+)\.LOG", name))]
    assert len(numbers) == len(sizes), sizes
    assert max(numbers) > len(sizes), sizes  # it rolled, and deleted the oldest
    assert all(size <= 4096 for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 16384, sizes
