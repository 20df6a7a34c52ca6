"""A damaged queue file: detected at open, moved aside (never deleted), salvaged, said in one line.

Each corruption of issue 7 finding 5 -- truncated, a garbage header, a directory, two pages
overwritten in the middle, truncated to 0 bytes -- plus a queue file that went missing, and
what is not damage (a newer schema: refused, the file left as it is).
"""

from __future__ import annotations

import datetime
import logging
import random
import sqlite3
from pathlib import Path

import pytest

from exchsim.transport.queue import (
    SCHEMA_VERSION,
    MessageQueue,
    QueuedMessage,
    QueueUnavailableError,
    Recovery,
)

T0 = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
PAGE = 4096


def body(n: int) -> bytes:
    return (f"Subject: m{n:03}\r\n\r\n".encode() + b"x" * 3000 + b"\r\n")


async def filled(path: Path, count: int = 40) -> list[QueuedMessage]:
    """A queue file holding ``count`` messages of about 3 KB, closed cleanly."""
    q = await MessageQueue.open(path)
    try:
        return [await q.enqueue(message_id=f"<m{n}@contoso.com>", sender="a@contoso.com",
                                recipients=["alice@contoso.com", f"r{n}@fabrikam.com"],
                                data=body(n), metadata={"n": str(n)}, now=T0)
                for n in range(count)]
    finally:
        await q.close()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def garbage_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(b"this is not a queue".ljust(100, b"!") + data[100:])


def directory(path: Path) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


def overwrite_two_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = (len(data) // PAGE // 2) * PAGE
    data[middle:middle + 2 * PAGE] = random.Random(7).randbytes(2 * PAGE)
    path.write_bytes(bytes(data))


def to_zero(path: Path) -> None:
    path.write_bytes(b"")


def moved_aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".old-*[0-9TZ]"))


async def reopen(path: Path, caplog: pytest.LogCaptureFixture) -> tuple[MessageQueue, str]:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        q = await MessageQueue.open(path)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines  # one clear line, and nothing else
    assert not any(r.exc_info for r in caplog.records)
    return q, lines[0]


@pytest.mark.parametrize("damage", [truncate, garbage_header, directory, to_zero],
                         ids=["truncated", "garbage-header", "directory", "truncated-to-zero"])
async def test_an_unreadable_queue_file_is_moved_aside_and_a_new_queue_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    await filled(path)
    assert callable(damage)
    damage(path)
    damaged = path.read_bytes() if path.is_file() else None
    q, line = await reopen(path, caplog)
    try:
        assert line.startswith(f"queue {path} is damaged (")
        assert q.recovery is not None and q.recovery.moved_to is not None
        [old] = moved_aside(path)
        assert q.recovery.moved_to == old and old.name in line
        if damaged is None:
            assert (old / "inside").is_dir()
        else:
            assert old.read_bytes() == damaged  # kept as it was: never deleted, never repaired
        # The server goes on with a sound, writable queue in the old file's place.
        assert await q.pending_count() == q.recovery.salvaged
        fresh = await q.enqueue(message_id="<new@contoso.com>", sender="", data=b"x\r\n",
                                recipients=["alice@contoso.com"], metadata={}, now=T0)
        assert await q.get(fresh.internal_id) == fresh
    finally:
        await q.close()
    q = await MessageQueue.open(path)  # and the next start finds nothing wrong
    assert q.recovery is None
    await q.close()


async def test_two_pages_overwritten_mid_file_are_detected_and_the_rest_salvaged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    originals = {m.internal_id: m for m in await filled(path)}
    overwrite_two_pages(path)
    damaged = path.read_bytes()
    q, line = await reopen(path, caplog)
    try:
        recovery = q.recovery
        assert recovery is not None and recovery.moved_to is not None
        assert "database disk image is malformed" in line or "integrity check" in line
        assert 30 <= recovery.salvaged < 40 and recovery.found == 40
        assert f"salvaged {recovery.salvaged} of the 40 messages found" in line
        assert recovery.moved_to.read_bytes() == damaged
        later = T0 + datetime.timedelta(days=1)
        salvaged = await q.due(later, limit=100)
        assert len(salvaged) == recovery.salvaged == await q.pending_count()
        for message in salvaged:  # whole: InternalId, recipients, data, metadata
            assert message == originals[message.internal_id]
        # InternalIds continue above the damaged file's: "InternalId + recipient" stays unique.
        fresh = await q.enqueue(message_id="<new@contoso.com>", sender="", data=b"x\r\n",
                                recipients=["alice@contoso.com"], metadata={}, now=T0)
        assert fresh.internal_id > max(originals)
    finally:
        await q.close()


async def test_a_suspended_message_stays_suspended_through_a_salvage(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    originals = await filled(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE messages SET suspended = 1")  # every message Suspend-Message'd
    conn.commit()
    conn.close()
    overwrite_two_pages(path)
    q, _ = await reopen(path, caplog)
    try:
        assert q.recovery is not None and q.recovery.salvaged > 0
        assert await q.pending_count() == q.recovery.salvaged
        assert await q.due(T0 + datetime.timedelta(days=1), limit=100) == []  # none resumed
        kept = [m for m in originals if await q.get(m.internal_id) is not None]
        assert len(kept) == q.recovery.salvaged
    finally:
        await q.close()


async def test_salvage_reads_a_damaged_file_that_still_has_its_wal(tmp_path: Path) -> None:
    """As after kill -9: the last commits are only in the -wal file; they are salvaged too."""
    path = tmp_path / "queue" / "EX01.sqlite"
    await filled(path, 30)
    conn = sqlite3.connect(path, isolation_level=None)  # a writer that never checkpoints
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("INSERT INTO messages (message_id, sender, data, received_at, next_attempt_at,"
                 " metadata) VALUES ('<wal@contoso.com>', '', x'00', 0, 0, '{}')")
    wal_id = conn.execute("SELECT max(internal_id) FROM messages").fetchone()[0]
    conn.execute("INSERT INTO recipients VALUES (?, 0, 'alice@contoso.com', NULL)", (wal_id,))
    overwrite_two_pages(path)  # the main file is damaged; the -wal file is sound
    copy = tmp_path / "copy"
    copy.mkdir()
    for suffix in ("", "-wal"):
        (copy / f"EX01.sqlite{suffix}").write_bytes(Path(f"{path}{suffix}").read_bytes())
    (copy / "EX01.sqlite.marker").write_bytes(path.with_name("EX01.sqlite.marker").read_bytes())
    conn.close()
    q = await MessageQueue.open(copy / "EX01.sqlite")
    try:
        assert q.recovery is not None and 0 < q.recovery.salvaged < 31
        assert await q.get(wal_id) is not None
        [old] = moved_aside(copy / "EX01.sqlite")
        assert Path(f"{old}-wal").exists()  # moved with its file, so the pair still opens
    finally:
        await q.close()


async def test_a_queue_truncated_to_zero_bytes_is_reported_not_silently_empty(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    await filled(path)
    marker = path.with_name("EX01.sqlite.marker")
    assert marker.exists()  # written when the queue file was created
    path.write_bytes(b"")
    q, line = await reopen(path, caplog)
    await q.close()
    assert "the file is empty (0 bytes), but EX01.sqlite.marker says the queue was created on " \
        in line
    assert "no message could be read from it; started a new, empty queue" in line
    assert moved_aside(path)[0].stat().st_size == 0


async def test_a_queue_file_that_went_missing_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    await filled(path)
    path.unlink()
    q, line = await reopen(path, caplog)
    await q.close()
    assert "the file is missing, but EX01.sqlite.marker says the queue was created" in line
    assert q.recovery == Recovery(path, q.recovery.reason if q.recovery else "", None, 0, 0)


async def test_a_new_queue_and_a_sound_queue_open_without_a_word(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    with caplog.at_level(logging.INFO):
        await filled(path, 3)
        q = await MessageQueue.open(path)
    try:
        assert q.recovery is None and await q.pending_count() == 3
    finally:
        await q.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not moved_aside(path)
    # A queue file from before the marker existed gets one; it is not damage.
    path.with_name("EX01.sqlite.marker").unlink()
    q = await MessageQueue.open(path)
    await q.close()
    assert q.recovery is None and path.with_name("EX01.sqlite.marker").exists()


async def test_a_newer_schema_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    await filled(path, 2)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(QueueUnavailableError, match=f"schema version {SCHEMA_VERSION + 1}"):
        await MessageQueue.open(path)
    assert path.read_bytes() == before and not moved_aside(path)


async def test_what_the_integrity_check_reports_is_said_in_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """quick_check answers in rows with line breaks in them; the damage line stays one line."""
    path = tmp_path / "queue" / "EX01.sqlite"
    await filled(path)
    data = bytearray(path.read_bytes())
    data[PAGE:3 * PAGE] = b"\x5a" * 2 * PAGE  # the tables' root pages
    path.write_bytes(bytes(data))
    q, line = await reopen(path, caplog)
    await q.close()
    assert "(integrity check: Page " in line and "\n" not in line
    assert "salvaged 0 of the 40 messages found into a new queue (the other 40 stay in" in line
