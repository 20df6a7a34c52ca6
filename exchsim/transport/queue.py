"""The hub's durable queue: one SQLite file per server, WAL mode, fsync before the 250.

A message that got ``250 2.6.0 ... Queued mail for delivery`` must survive ``kill -9`` and a power
cut, so :meth:`MessageQueue.enqueue` returns its InternalId only after the transaction that
stored it has committed with ``PRAGMA synchronous=FULL`` (in WAL mode the log is fsynced on every
commit). The caller replies 250 after that, never before.

Threading: the SQLite connection belongs to ONE dedicated worker thread (a single-thread
executor); the event loop never touches it, so a slow fsync never stalls other sessions.

Group commit (:class:`~exchsim.transport.groupcommit.GroupCommit`, on that same thread): every
write (enqueue, complete, defer) is an operation; a batch of pending operations runs in one
transaction (each inside its own SAVEPOINT, so one failing operation fails only its own caller)
and commits once -- one fsync -- before the callers learn their results.

Due order is fair: :meth:`MessageQueue.due` hands out the messages whose next attempt is the
earliest first (then by InternalId), so no page of messages that keep failing can hide others
that became due before them; every failure sets a next attempt in the future (hub.py).

The Poison queue (exchange.md §8.4): a message whose delivery crashed exchsim's own code is
counted in the ``crashes`` table (:meth:`MessageQueue.record_crash`); at the threshold (2, as
Exchange's PoisonThreshold) it is poisoned: it stays in the file with its recipients, its next
attempt is "never", and nothing retries it automatically. :meth:`MessageQueue.poisoned` and
:meth:`MessageQueue.poison_count` show it; :meth:`MessageQueue.resume_poisoned` is the admin's
Resume-Message. Poisoned messages are not counted by :meth:`MessageQueue.pending_count`.

Leases live in memory only: they keep two delivery workers of one process off the same message.
After a restart nothing is leased and every pending message is due again.

The file itself -- schema, the integrity check at every open, what happens to a damaged file
(moved aside, never deleted; what can be read is salvaged into a new queue) -- is
:mod:`exchsim.transport.queuefile`; what Get-Queue, Get-Message and the admin's actions read and
change is :mod:`exchsim.transport.queueadmin`, whose SQL is :mod:`exchsim.transport.queuesql`
(named methods over :meth:`MessageQueue.read` and :meth:`MessageQueue.write`). Only queue.py,
queuefile.py and queuesql.py import :mod:`sqlite3` or hold SQL (tests/test_architecture.py).
A suspended message (``messages.suspended``, schema version 3) is never due until it is resumed.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sqlite3
import types
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from exchsim.clock import SYSTEM_CLOCK, Clock
from exchsim.transport.groupcommit import GroupCommit
from exchsim.transport.queuefile import (
    COLUMNS,
    NEVER,
    SCHEMA_VERSION,
    QueueUnavailableError,
    Recovery,
    from_micros,
    open_queue_file,
    to_micros,
)

__all__ = ["POISON_THRESHOLD", "SCHEMA_VERSION", "MessageQueue", "PoisonedMessage",
           "QueueClosedError", "QueueStatistics", "QueueUnavailableError", "QueuedMessage",
           "Recovery"]

T = TypeVar("T")

# Bound one group-commit transaction.
_MAX_BATCH_OPERATIONS = 512
_MAX_BATCH_BYTES = 32 * 1024 * 1024

POISON_THRESHOLD = 2
"""Crashes after which a message is poisoned (Exchange's PoisonThreshold, exchange.md §8.4)."""

class QueueClosedError(RuntimeError):
    """The queue was closed (or failed to open); no further operations are possible."""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    internal_id: int
    """Exchange's InternalId: int64, unique for the life of the queue file."""
    message_id: str
    """The Message-ID, with angle brackets."""
    sender: str
    """The MAIL FROM address; ``''`` for the null sender."""
    recipients: tuple[str, ...]
    """Recipients still pending delivery, in RCPT order."""
    data: bytes
    """The full message as it will be delivered (CRLF line endings)."""
    received_at: datetime.datetime
    """When the message was queued (aware, UTC)."""
    attempts: int
    """How many times delivery was deferred."""
    next_attempt_at: datetime.datetime
    """Not due before this instant (aware, UTC)."""
    metadata: Mapping[str, str]
    """Free-form facts (authentication, client IP ...), read-only."""
    last_error: str | None = None
    """The reason given to the last :meth:`MessageQueue.defer`, if any."""


@dataclass(frozen=True, slots=True)
class PoisonedMessage:
    """A message in the Poison queue: never retried until an admin resumes it."""

    message: QueuedMessage
    crashes: int
    """How often its delivery crashed."""
    poisoned_at: datetime.datetime
    reason: str
    """What the last crash was (exception type and text)."""


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    commits: int
    """Write transactions committed (each one fsync)."""
    operations: int
    """Write operations (enqueue, complete, defer) committed."""
    enqueued: int
    """Messages enqueued (committed)."""
    largest_batch: int
    """Most operations committed by one transaction."""


@dataclass(frozen=True, slots=True)
class _Operation:
    run: Callable[[sqlite3.Connection], Any]
    size: int
    is_enqueue: bool


def _row_to_message(row: Sequence[Any], recipients: tuple[str, ...]) -> QueuedMessage:
    (internal_id, message_id, sender, data, received_at, attempts, next_attempt_at, last_error,
     metadata) = row
    return QueuedMessage(
        internal_id=internal_id,
        message_id=message_id,
        sender=sender,
        recipients=recipients,
        data=bytes(data),
        received_at=from_micros(received_at),
        attempts=attempts,
        next_attempt_at=from_micros(next_attempt_at),
        metadata=types.MappingProxyType(json.loads(metadata)),
        last_error=last_error,
    )


_COLUMNS = COLUMNS


def _load(conn: sqlite3.Connection, rows: list[Sequence[Any]]) -> list[QueuedMessage]:
    if not rows:
        return []
    ids = [row[0] for row in rows]
    pending: dict[int, list[str]] = {i: [] for i in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for internal_id, address in conn.execute(
            f"SELECT internal_id, address FROM recipients WHERE internal_id IN ({marks}) "
            "ORDER BY internal_id, position",
            chunk,
        ):
            pending[internal_id].append(address)
    return [_row_to_message(row, tuple(pending[row[0]])) for row in rows]


class MessageQueue:
    """The durable queue of one hub. Create with :meth:`open`, finish with :meth:`close`."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor,
                 conn: sqlite3.Connection, recovery: Recovery | None = None) -> None:
        """Use :meth:`open`."""
        self.path = path
        self.recovery = recovery
        """What was done at open about a damaged queue file (None: the file was sound)."""
        self._executor = executor
        self._conn = conn  # touched only on the executor's thread
        self._writes: GroupCommit[_Operation, tuple[bool, Any]] = GroupCommit(
            self._commit, executor=executor, max_batch=_MAX_BATCH_OPERATIONS,
            cost=lambda op: op.size, max_cost=_MAX_BATCH_BYTES)
        self._leases: set[int] = set()
        self._closed = False
        self._commits = 0
        self._operations = 0
        self._enqueued = 0
        self._largest_batch = 0

    # --- life cycle -------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: Path, *, clock: Clock = SYSTEM_CLOCK) -> MessageQueue:
        """Open (creating if needed) the queue file at ``path`` and its worker thread.

        The file is checked first; a damaged one is moved aside and what it holds is salvaged
        into a new file (:attr:`recovery` says what was done). Raises
        :class:`QueueUnavailableError` when the file cannot be used for another reason.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"queue-{path.stem}")
        try:
            conn, recovery = await asyncio.get_running_loop().run_in_executor(
                executor, open_queue_file, path, clock.utc())
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, executor, conn, recovery)

    async def close(self) -> None:
        """Commit what is pending, close the database and stop the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._writes.drain()  # the last group commit finishes; its callers get results
        self._leases.clear()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_connection)
        finally:
            self._executor.shutdown(wait=False)

    def _close_connection(self) -> None:
        try:
            # Fold the WAL back into the main file so a stopped queue is one self-contained file.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError(f"queue {self.path} is closed")

    # --- writes (group commit) --------------------------------------------------------------

    async def enqueue(
        self,
        *,
        message_id: str,
        sender: str,
        recipients: Sequence[str],
        data: bytes,
        metadata: Mapping[str, str],
        now: datetime.datetime,
    ) -> QueuedMessage:
        """Store a message for ``recipients``; return it once the commit is durable.

        The message is due immediately (``next_attempt_at == now``). The value returned is the
        message as :meth:`due` would load it, with its InternalId, so a fresh message can be
        handed to a delivery worker in memory without reading it back.
        """
        rcpts = tuple(recipients)
        if not rcpts:
            raise ValueError("a queued message needs at least one recipient")
        received = to_micros(now)
        meta = json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True)
        blob = bytes(data)

        def run(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO messages (message_id, sender, data, received_at, next_attempt_at, "
                "metadata) VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, sender, blob, received, received, meta),
            )
            internal_id = cursor.lastrowid
            assert internal_id is not None
            conn.executemany(
                "INSERT INTO recipients (internal_id, position, address) VALUES (?, ?, ?)",
                [(internal_id, i, r) for i, r in enumerate(rcpts)],
            )
            return internal_id

        internal_id: int = await self._submit(run, size=len(blob), is_enqueue=True)
        when = from_micros(received)
        return QueuedMessage(
            internal_id=internal_id, message_id=message_id, sender=sender, recipients=rcpts,
            data=blob, received_at=when, attempts=0, next_attempt_at=when,
            metadata=types.MappingProxyType(dict(metadata)),
        )

    async def complete(self, internal_id: int, recipients: Sequence[str]) -> None:
        """These recipients are done (delivered, relayed or NDR'd).

        Recipients that are not pending are ignored. When no recipient remains, the message
        is deleted. Raises :class:`KeyError` if the message is not in the queue.
        """
        rcpts = tuple(recipients)

        def run(conn: sqlite3.Connection) -> None:
            _require(conn, internal_id)
            conn.executemany(
                "DELETE FROM recipients WHERE internal_id = ? AND address = ?",
                [(internal_id, r) for r in rcpts],
            )
            remaining = conn.execute(
                "SELECT 1 FROM recipients WHERE internal_id = ? LIMIT 1", (internal_id,)
            ).fetchone()
            if remaining is None:
                conn.execute("DELETE FROM messages WHERE internal_id = ?", (internal_id,))
                conn.execute("DELETE FROM crashes WHERE internal_id = ?", (internal_id,))

        await self._submit(run, size=0, is_enqueue=False)

    async def defer(self, internal_id: int, recipients: Sequence[str], *,
                    next_attempt_at: datetime.datetime, reason: str,
                    reasons: Mapping[str, str] | None = None) -> None:
        """Delivery to ``recipients`` failed temporarily: keep them pending, retry later.

        Counts one attempt for the message, sets its next attempt and records ``reason`` on the
        message and on these recipients (``reasons``: a recipient's own, where it has one).
        Raises :class:`KeyError` if the message is not queued.
        """
        rcpts = tuple(recipients)
        when = to_micros(next_attempt_at)
        own = dict(reasons or {})

        def run(conn: sqlite3.Connection) -> None:
            _require(conn, internal_id)
            conn.execute(
                "UPDATE messages SET attempts = attempts + 1, next_attempt_at = ?, "
                "last_error = ? WHERE internal_id = ?",
                (when, reason, internal_id),
            )
            conn.executemany(
                "UPDATE recipients SET last_error = ? WHERE internal_id = ? AND address = ?",
                [(own.get(r, reason), internal_id, r) for r in rcpts],
            )

        await self._submit(run, size=0, is_enqueue=False)

    async def record_crash(self, internal_id: int, *, reason: str, now: datetime.datetime,
                           retry_at: datetime.datetime,
                           threshold: int = POISON_THRESHOLD) -> bool:
        """Delivery of the message crashed (an unexpected exception in exchsim's own code).

        Counts the crash; below ``threshold`` the message is retried at ``retry_at``, at the
        threshold it is poisoned (never due again; see the module docstring). Returns whether
        it was poisoned. Raises :class:`KeyError` if the message is not queued.
        """
        moment, retry = to_micros(now), to_micros(retry_at)

        def run(conn: sqlite3.Connection) -> bool:
            _require(conn, internal_id)
            row = conn.execute("SELECT count FROM crashes WHERE internal_id = ?",
                               (internal_id,)).fetchone()
            count = (row[0] if row else 0) + 1
            poisoned = count >= threshold
            conn.execute(
                "INSERT OR REPLACE INTO crashes (internal_id, count, poisoned_at, last_error) "
                "VALUES (?, ?, ?, ?)", (internal_id, count, moment if poisoned else None, reason))
            conn.execute(
                "UPDATE messages SET attempts = attempts + 1, next_attempt_at = ?, "
                "last_error = ? WHERE internal_id = ?",
                (NEVER if poisoned else retry, reason, internal_id))
            return poisoned

        poisoned: bool = await self._submit(run, size=0, is_enqueue=False)
        return poisoned

    async def resume_poisoned(self, internal_id: int, now: datetime.datetime) -> None:
        """Take a message out of the Poison queue (Exchange's Resume-Message): due at ``now``,
        its crash count reset. Raises :class:`KeyError` if it is not in the Poison queue."""
        moment = to_micros(now)

        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM crashes WHERE internal_id = ? AND poisoned_at IS NOT "
                            "NULL", (internal_id,)).rowcount == 0:
                raise KeyError(internal_id)
            conn.execute("UPDATE messages SET next_attempt_at = ? WHERE internal_id = ?",
                         (moment, internal_id))

        await self._submit(run, size=0, is_enqueue=False)

    async def note(self, internal_id: int, facts: Mapping[str, str]) -> None:
        """Add ``facts`` to the message's metadata (a delay DSN sent, transport/notify.py).
        Raises :class:`KeyError` if the message is not queued."""
        added = dict(facts)

        def run(conn: sqlite3.Connection) -> None:
            _require(conn, internal_id)
            row = conn.execute("SELECT metadata FROM messages WHERE internal_id = ?",
                               (internal_id,)).fetchone()
            merged = {**json.loads(row[0]), **added}
            conn.execute("UPDATE messages SET metadata = ? WHERE internal_id = ?",
                         (json.dumps(merged, ensure_ascii=False, sort_keys=True), internal_id))

        await self._submit(run, size=0, is_enqueue=False)

    async def _submit(self, run: Callable[[sqlite3.Connection], T], *, size: int,
                      is_enqueue: bool) -> T:
        self._check_open()
        ok, value = await self._writes.submit(_Operation(run, size, is_enqueue))
        if not ok:
            raise value
        result: T = value
        return result

    def _commit(self, batch: Sequence[_Operation]) -> list[tuple[bool, Any]]:
        """Worker thread: run a batch in one transaction, each op in its own savepoint."""
        conn = self._conn
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in batch:
                conn.execute("SAVEPOINT op")
                try:
                    value = op.run(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE op")
                    outcomes.append((True, value))
            conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced before this returns
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._commits += 1
        self._operations += len(batch)
        self._largest_batch = max(self._largest_batch, len(batch))
        self._enqueued += sum(1 for op, (ok, _) in zip(batch, outcomes, strict=True)
                              if ok and op.is_enqueue)
        return outcomes

    async def write(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``run`` in the group commit, on the queue's thread (transport/queueadmin.py)."""
        return await self._submit(run, size=0, is_enqueue=False)

    # --- reads ------------------------------------------------------------------------------

    async def read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``run`` on the queue's thread, outside any write (transport/queueadmin.py)."""
        return await self._read(run)

    async def _read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        return await asyncio.get_running_loop().run_in_executor(self._executor, run, self._conn)

    async def due(self, now: datetime.datetime, limit: int = 100,
                  exclude: frozenset[int] = frozenset()) -> list[QueuedMessage]:
        """Messages with pending recipients whose next attempt is at or before ``now``.

        The earliest next attempt first (then InternalId): a message deferred long ago comes
        before messages that failed since, however many there are. Leased messages, those in
        ``exclude`` (the caller's own in-flight ones) and poisoned ones are left out.
        """
        if limit <= 0:
            return []
        moment = to_micros(now)
        skip = frozenset(self._leases) | exclude

        def run(conn: sqlite3.Connection) -> list[QueuedMessage]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages m WHERE next_attempt_at <= ? AND suspended = 0 "
                "AND EXISTS (SELECT 1 FROM recipients r WHERE r.internal_id = m.internal_id) "
                "ORDER BY next_attempt_at, internal_id LIMIT ?",
                (moment, limit + len(skip)),
            ).fetchall()
            return _load(conn, [row for row in rows if row[0] not in skip][:limit])

        found = await self._read(run)
        return [m for m in found if m.internal_id not in self._leases]

    async def next_due(self, after: datetime.datetime) -> datetime.datetime | None:
        """The earliest next attempt later than ``after`` (None: nothing is scheduled)."""
        moment = to_micros(after)

        def run(conn: sqlite3.Connection) -> int | None:
            value: int | None = conn.execute(
                "SELECT MIN(next_attempt_at) FROM messages WHERE next_attempt_at > ? "
                "AND next_attempt_at < ? AND suspended = 0", (moment, NEVER)).fetchone()[0]
            return value

        found = await self._read(run)
        return None if found is None else from_micros(found)

    async def get(self, internal_id: int) -> QueuedMessage | None:
        """The queued message with this InternalId, or None when it is not (any longer) queued."""

        def run(conn: sqlite3.Connection) -> QueuedMessage | None:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE internal_id = ?", (internal_id,)
            ).fetchall()
            loaded = _load(conn, rows)
            return loaded[0] if loaded else None

        return await self._read(run)

    async def pending_count(self) -> int:
        """How many messages have recipients still pending (the Poison queue left out)."""

        def run(conn: sqlite3.Connection) -> int:
            count: int = conn.execute(
                "SELECT COUNT(*) FROM messages m WHERE EXISTS "
                "(SELECT 1 FROM recipients r WHERE r.internal_id = m.internal_id) "
                "AND NOT EXISTS (SELECT 1 FROM crashes c WHERE c.internal_id = m.internal_id "
                "AND c.poisoned_at IS NOT NULL)"
            ).fetchone()[0]
            return count

        return await self._read(run)

    async def poison_count(self) -> int:
        """How many messages are in the Poison queue."""

        def run(conn: sqlite3.Connection) -> int:
            count: int = conn.execute(
                "SELECT COUNT(*) FROM crashes c JOIN messages m USING (internal_id) "
                "WHERE c.poisoned_at IS NOT NULL").fetchone()[0]
            return count

        return await self._read(run)

    async def poisoned(self, limit: int = 1000) -> list[PoisonedMessage]:
        """The Poison queue, in the order the messages were poisoned (Get-Message -Queue
        <server>\\Poison)."""

        def run(conn: sqlite3.Connection) -> list[PoisonedMessage]:
            facts = conn.execute(
                "SELECT internal_id, count, poisoned_at, last_error FROM crashes "
                "WHERE poisoned_at IS NOT NULL ORDER BY poisoned_at, internal_id LIMIT ?",
                (limit,)).fetchall()
            out: list[PoisonedMessage] = []
            for internal_id, count, poisoned_at, reason in facts:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM messages WHERE internal_id = ?",
                                    (internal_id,)).fetchall()
                for message in _load(conn, rows):
                    out.append(PoisonedMessage(message, count, from_micros(poisoned_at),
                                               reason or ""))
            return out

        return await self._read(run)

    # --- leases (in memory) -----------------------------------------------------------------

    async def lease(self, internal_id: int) -> bool:
        """Take the message for delivery. False if it is leased already or not queued.

        A lease lasts until :meth:`release` and is never persisted; :meth:`due` skips leased
        messages. Typical use: ``due()`` -> ``lease()`` -> deliver -> ``complete``/``defer`` ->
        ``release()`` (in a ``finally``).
        """
        self._check_open()
        if internal_id in self._leases:
            return False
        self._leases.add(internal_id)  # reserve before awaiting: concurrent callers lose
        try:
            exists = await self._read(
                lambda conn: conn.execute(
                    "SELECT 1 FROM messages WHERE internal_id = ?", (internal_id,)
                ).fetchone() is not None
            )
        except BaseException:
            self._leases.discard(internal_id)
            raise
        if not exists:
            self._leases.discard(internal_id)
        return exists

    def release(self, internal_id: int) -> None:
        """Give a lease back (no-op if not leased). Synchronous so it is safe in ``finally``."""
        self._leases.discard(internal_id)

    def leased(self) -> frozenset[int]:
        """InternalIds currently leased."""
        return frozenset(self._leases)

    # --- diagnostics ------------------------------------------------------------------------

    def statistics(self) -> QueueStatistics:
        """Counters since :meth:`open` (group commit: ``commits`` < ``operations`` under load)."""
        return QueueStatistics(
            commits=self._commits,
            operations=self._operations,
            enqueued=self._enqueued,
            largest_batch=self._largest_batch,
        )


def _require(conn: sqlite3.Connection, internal_id: int) -> None:
    if conn.execute(
        "SELECT 1 FROM messages WHERE internal_id = ?", (internal_id,)
    ).fetchone() is None:
        raise KeyError(internal_id)

