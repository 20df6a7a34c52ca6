"""The SQL of the queue cmdlets (transport/queueadmin.py): what Get-Queue and Get-Message read
from a hub's queue file and what Suspend-Message, Resume-Message, Resume-Queue and Retry-Queue
change in it, as named methods.

With transport/queue.py (the durable queue) and transport/queuefile.py (the file, its schema and
its recovery) this is the queue layer: the only modules that import :mod:`sqlite3` or hold SQL
(tests/test_architecture.py checks it). :class:`QueueRecords` runs its statements through
:meth:`MessageQueue.read` (on the queue's thread, outside any write) and
:meth:`MessageQueue.write` (in the group commit); :func:`read_file` reads a queue file that no
running lab holds (read-only, ``exchsim queue`` when the lab is not running).
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from exchsim.transport.queue import MessageQueue
from exchsim.transport.queuefile import from_micros, open_read_only, to_micros

__all__ = ["MAX_MESSAGES", "QueueRecords", "Row", "read_file"]

MAX_MESSAGES = 5000  # messages one view reads (Get-Message's ResultSize is 1000 by default)
_NEVER = datetime.datetime(9999, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True, slots=True)
class Row:
    """One queued message as the file holds it."""

    internal_id: int
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    size: int
    headers: bytes
    received_at: datetime.datetime
    attempts: int
    next_attempt_at: datetime.datetime
    last_error: str | None
    metadata: dict[str, str]
    suspended: bool
    poisoned: bool


def _when(micros: int) -> datetime.datetime:
    return min(from_micros(micros), _NEVER)


def _read_rows(conn: sqlite3.Connection, ids: Iterable[int] | None = None,
               limit: int = MAX_MESSAGES) -> list[Row]:
    """The pending messages (or those of ``ids``), oldest first, with their recipients."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
    suspended = "m.suspended" if "suspended" in columns else "0"
    crashes = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'crashes'").fetchone()
    poisoned = ("EXISTS (SELECT 1 FROM crashes c WHERE c.internal_id = m.internal_id AND "
                "c.poisoned_at IS NOT NULL)") if crashes else "0"
    where = "EXISTS (SELECT 1 FROM recipients r WHERE r.internal_id = m.internal_id)"
    args: list[int] = []
    if ids is not None:
        wanted = sorted(set(ids))[:limit]
        where += f" AND m.internal_id IN ({','.join('?' * len(wanted)) or 'NULL'})"
        args = wanted
    rows = conn.execute(
        "SELECT m.internal_id, m.message_id, m.sender, length(m.data), substr(m.data, 1, 16384),"
        " m.received_at, m.attempts, m.next_attempt_at, m.last_error, m.metadata, "
        f"{suspended}, {poisoned} FROM messages m WHERE {where} "
        "ORDER BY m.internal_id LIMIT ?", (*args, limit)).fetchall()
    rcpts: dict[int, list[str]] = {row[0]: [] for row in rows}
    found = list(rcpts)
    for start in range(0, len(found), 500):
        chunk = found[start:start + 500]
        for internal_id, address in conn.execute(
                "SELECT internal_id, address FROM recipients WHERE internal_id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY internal_id, position", chunk):
            rcpts[internal_id].append(address)
    out = []
    for (internal_id, message_id, sender, size, head, received, attempts, next_at, error,
         meta, held, poison) in rows:
        try:
            metadata = {str(k): str(v) for k, v in json.loads(meta).items()}
        except (ValueError, AttributeError):
            metadata = {}
        out.append(Row(internal_id, message_id, sender, tuple(rcpts[internal_id]), size,
                       bytes(head), _when(received), attempts, _when(next_at), error, metadata,
                       bool(held), bool(poison)))
    return out


def read_file(path: Path) -> list[Row]:
    """The pending messages of a queue file no running lab holds (opened read-only, unchecked
    and unmigrated); :class:`~exchsim.transport.queuefile.QueueUnavailableError` when it cannot
    be read."""
    conn = open_read_only(path)
    try:
        return _read_rows(conn)
    finally:
        conn.close()


class QueueRecords:
    """The queue cmdlets' reads and changes of one running hub's queue."""

    def __init__(self, queue: MessageQueue) -> None:
        self.queue = queue

    async def rows(self, ids: Iterable[int] | None = None) -> list[Row]:
        """The pending messages (or those of ``ids``), oldest first, at most
        :data:`MAX_MESSAGES`."""
        wanted = None if ids is None else list(ids)
        return await self.queue.read(lambda conn: _read_rows(conn, wanted))

    async def suspend(self, internal_id: int) -> None:
        """Suspend-Message: never due until it is resumed."""
        await self.queue.write(lambda conn: conn.execute(
            "UPDATE messages SET suspended = 1 WHERE internal_id = ?", (internal_id,)))

    async def resume(self, internal_id: int, now: datetime.datetime) -> None:
        """Resume-Message (a message not in the Poison queue): due again, at ``now`` at the
        latest."""
        moment = to_micros(now)
        await self.queue.write(lambda conn: conn.execute(
            "UPDATE messages SET suspended = 0, next_attempt_at = min(next_attempt_at, ?) "
            "WHERE internal_id = ?", (moment, internal_id)))

    async def make_due(self, ids: Iterable[int], now: datetime.datetime) -> None:
        """These messages, those not suspended, are due at ``now`` at the latest."""
        moment = to_micros(now)
        params = [(moment, i) for i in ids]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany("UPDATE messages SET next_attempt_at = min(next_attempt_at, ?) "
                             "WHERE internal_id = ? AND suspended = 0", params)

        await self.queue.write(run)
