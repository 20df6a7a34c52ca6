"""``exchsim serve`` on a data directory whose queue file is damaged, as a real process; and a
lab whose delivery cannot be kept running.

Each damage of issue 7 finding 5: the server says so in one line on stderr (no traceback),
moves the damaged file aside (never deletes it), delivers what it salvaged and stops cleanly.
"""

from __future__ import annotations

import asyncio
import datetime
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from exchsim.config.load import load_config_text
from exchsim.daemon import LabDaemon
from exchsim.transport.queue import SCHEMA_VERSION, MessageQueue
from exchsim.transport.restart import RestartPolicy
from tests.integration.conftest import FAST_LAB_YAML, ROOT, port_offset
from tests.unit.transport.test_queue_damage import (
    directory,
    garbage_header,
    overwrite_two_pages,
    to_zero,
    truncate,
)

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
COUNT = 40


async def queue_with_mail(data: Path) -> Path:
    """DATA/queue/EX01.sqlite holding COUNT messages for alice@contoso.com, not yet delivered."""
    path = data / "queue" / "EX01.sqlite"
    # Received now: a message received at the helpers' fixed T0 (2024) is past
    # MessageExpirationTimeout, so the expiry check could fail it before its first delivery.
    now = datetime.datetime.now(datetime.UTC)
    q = await MessageQueue.open(path)
    try:
        for n in range(COUNT):
            message = (f"From: a@fabrikam.example\r\nSubject: salvage-{n:03}\r\n\r\n".encode()
                       + b"x" * 3000 + b"\r\n")
            await q.enqueue(message_id=f"<s{n}@fabrikam.example>", sender="a@fabrikam.example",
                            recipients=["alice@contoso.com"], data=message, metadata={}, now=now)
    finally:
        await q.close()
    return path


def delivered(data: Path) -> int:
    folder = data / "mailboxes" / "alice@contoso.com" / "new"
    return len(list(folder.iterdir())) if folder.exists() else 0


async def serve(data: Path) -> tuple[asyncio.subprocess.Process, int]:
    """``exchsim serve --server EX01`` on ``data``, once it printed ``exchsim: ready``."""
    offset = port_offset()
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "serve", "--config", "configs/single-server.yaml", "--server", "EX01",
        "--data", str(data), "--port-offset", str(offset), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    seen: list[str] = []
    while not seen or seen[-1] != "exchsim: ready":
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if not line:
            err = await proc.stderr.read()
            await proc.wait()
            raise AssertionError(f"exited {proc.returncode} before ready: {seen} {err.decode()}")
        seen.append(line.decode().strip())
    return proc, offset


@pytest.mark.parametrize("damage", [truncate, garbage_header, directory, overwrite_two_pages,
                                    to_zero],
                         ids=["truncated", "garbage-header", "directory", "pages-overwritten",
                              "truncated-to-zero"])
async def test_serve_on_a_damaged_queue_says_so_once_moves_it_aside_and_runs(
        tmp_path: Path, damage: Callable[[Path], None]) -> None:
    data = tmp_path / "data"
    path = await queue_with_mail(data)
    damage(path)
    damaged = path.read_bytes() if path.is_file() else None
    proc, _ = await serve(data)
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 10)).decode()
        assert f"ERROR exchsim.transport.queuefile: queue {path} is damaged (" in line
        [old] = sorted(path.parent.glob("EX01.sqlite.old-*[0-9TZ]"))
        assert f"moved it to {old.name}" in line
        if damaged is None:
            assert old.is_dir()
        else:
            assert old.read_bytes() == damaged
        if "salvaged" in line:  # what could be read is delivered
            salvaged = int(line.split("salvaged ")[1].split(" ")[0])
            assert 0 < salvaged < COUNT
            deadline = asyncio.get_running_loop().time() + 30
            while delivered(data) < salvaged:
                assert asyncio.get_running_loop().time() < deadline, delivered(data)
                await asyncio.sleep(0.1)
        else:
            assert "no message could be read from it; started a new, empty queue" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert proc.stderr is not None
    rest = (await proc.stderr.read()).decode()
    assert code == 0, rest
    assert rest == ""  # one line, and no traceback
    assert old.exists()


async def test_serve_on_a_queue_of_a_newer_exchsim_refuses_to_start_and_leaves_it(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = await queue_with_mail(data)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "serve", "--config", "configs/single-server.yaml", "--server", "EX01",
        "--data", str(data), "--port-offset", str(port_offset()), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "exchsim: ready" not in out.decode()
    assert err.decode() == (f"exchsim: cannot start: queue {path}: schema version "
                            f"{SCHEMA_VERSION + 1}, this exchsim reads {SCHEMA_VERSION} "
                            "(a newer exchsim wrote it)\n")
    assert path.read_bytes() == before
    assert not list(path.parent.glob("EX01.sqlite.old-*"))


async def test_a_lab_whose_delivery_keeps_failing_reports_a_failure(tmp_path: Path) -> None:
    """The delivery agent is restarted with a backoff; when it cannot be kept running the
    daemon says why, and the CLI exits with status 1 on it."""
    lab = load_config_text(FAST_LAB_YAML, "lab.yaml")
    for _ in range(20):
        daemon = LabDaemon(lab, tmp_path / "data", port_offset=port_offset())
        daemon.restart_policy = RestartPolicy(first_delay=0.05, max_delay=0.1, max_failures=3)
        try:
            await daemon.start()
        except OSError:
            continue
        break
    try:
        assert not daemon.failed.is_set()
        await daemon.queues["EX01"].close()  # every scan of the queue now raises
        await asyncio.wait_for(daemon.failed.wait(), 10)
        assert daemon.failure is not None
        assert daemon.failure.startswith("delivery EX01 failed 3 times within 300 s, giving up;")
    finally:
        await daemon.stop()


async def test_the_cli_exits_1_when_delivery_cannot_be_kept_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``exchsim serve``'s own loop: the daemon's failure ends it with status 1 and one line."""
    from exchsim import cli

    started: list[LabDaemon] = []

    class QuickToGiveUp(LabDaemon):
        async def start(self) -> None:
            self.restart_policy = RestartPolicy(first_delay=0.05, max_delay=0.1, max_failures=3)
            await super().start()
            started.append(self)

    monkeypatch.setattr(cli, "LabDaemon", QuickToGiveUp)
    config = tmp_path / "lab.yaml"
    config.write_text(FAST_LAB_YAML)
    args = cli._parser().parse_args(
        ["serve", "--config", str(config), "--server", "EX01", "--data", str(tmp_path / "data"),
         "--port-offset", str(port_offset())])
    serving = asyncio.ensure_future(cli._serve(load_config_text(FAST_LAB_YAML, "lab.yaml"), args))
    for _ in range(200):
        if started or serving.done():
            break
        await asyncio.sleep(0.05)
    assert started, "the daemon did not start"
    await started[0].queues["EX01"].close()  # every scan of the queue now raises
    assert await asyncio.wait_for(serving, 15) == 1
    err = capsys.readouterr().err
    assert "exchsim: stopped: delivery EX01 failed 3 times within 300 s, giving up;" in err
