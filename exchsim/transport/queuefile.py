"""The hub queue's file: schema, the integrity check at open, and what happens to a damaged file.

Every open of ``DATA/queue/<server>.sqlite`` (:func:`open_queue_file`, on the queue's worker
thread) checks the file before the first message is read or written:

- it must be a regular file: a directory or anything else at that path is damage;
- ``PRAGMA quick_check`` must answer ``ok``; SQLite's "file is not a database" (a garbage
  header) and "database disk image is malformed" (a truncated file, overwritten pages) are
  damage too;
- the file must not have lost its queue. A sidecar file, ``<server>.sqlite.marker``, is written
  once, when the queue file is first created (and again after a recovery); it is never updated
  by the traffic. A queue file that is missing, 0 bytes long or without the queue's tables while
  its marker exists was emptied or removed: that is damage as well, never a silent fresh start.
  (To start from an empty queue on purpose, stop exchsim and remove the queue directory, or the
  ``.sqlite`` file and its ``.marker`` together.)

A damaged file is never deleted and never repaired in place. exchsim does what Exchange's
transport does with a queue database it cannot use, and what its admin does next: it moves the
damaged file aside (with its ``-wal`` and ``-shm`` files) to ``<server>.sqlite.old-<UTC time>``
-- Exchange renames its database to ``Messaging.old-<date>`` and creates a new one
(https://microsoft.github.io/CSS-Exchange/Transport/ReplayQueueDatabases) -- and replays what it
can read: every message whose row and recipients can still be read is copied, with its
InternalId, attempts and next attempt, into a new queue file, which then replaces the damaged
one. The server says so in one line (logged at ERROR; nothing else, no traceback) and starts:
``queue DATA/queue/EX01.sqlite is damaged (database disk image is malformed); moved it to
EX01.sqlite.old-20240506T070809Z; salvaged 38 of the 40 messages found into a new queue``.
Starting beats refusing here: a refusal makes a supervisor restart the server in a loop, and
the messages that can be read are delivered instead of waiting for an admin. What could not be
read stays in the moved-aside file.

The new file's InternalIds continue above every id the damaged file is known to have used, so
"InternalId + recipient" stays a safe de-duplication token.

Problems that are not damage -- the file is locked by another process, cannot be opened for
lack of permission, or was written by a newer exchsim (schema version) -- leave the file as it
is and raise :class:`QueueUnavailableError`: the server refuses to start with one line.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COLUMNS",
    "EPOCH",
    "NEVER",
    "SCHEMA_VERSION",
    "QueueUnavailableError",
    "Recovery",
    "from_micros",
    "open_queue_file",
    "open_read_only",
    "to_micros",
]

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
"""Times are stored as microseconds since this instant."""
_MICROSECOND = datetime.timedelta(microseconds=1)
NEVER = (datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC) - EPOCH) // _MICROSECOND
"""next_attempt_at of a poisoned message: never due (and still a valid datetime when loaded)."""


def to_micros(moment: datetime.datetime) -> int:
    """An aware datetime as the file stores it."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"an aware datetime is required, got naive {moment!r}")
    return (moment - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime.datetime:
    return EPOCH + datetime.timedelta(microseconds=value)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
# Version 2 added the ``crashes`` table (the Poison queue, transport/queue.py); version 3 the
# ``suspended`` column of ``messages`` (Suspend-Message, transport/queueadmin.py). An older file
# is upgraded in place at open (a CREATE TABLE, an ALTER TABLE; nothing rewritten).

# Exchange's InternalIds are large int64 numbers (e.g. 31937376813057). The first id of a new
# queue file is drawn at random in [2**40, 2**45) (a multiple of 2**20); AUTOINCREMENT then
# guarantees an id is never reused for the life of the file, even after the rows are deleted,
# so "InternalId + recipient" is safe as a delivery de-duplication token.
_ID_BASE_MIN = 1 << 40
_ID_BASE_SPAN = (1 << 45) - (1 << 40)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    internal_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id       TEXT    NOT NULL,
    sender           TEXT    NOT NULL,
    data             BLOB    NOT NULL,
    received_at      INTEGER NOT NULL,  -- microseconds since the epoch, UTC
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,  -- microseconds since the epoch, UTC
    last_error       TEXT,
    metadata         TEXT    NOT NULL,  -- JSON object of strings
    suspended        INTEGER NOT NULL DEFAULT 0  -- 1: Suspend-Message, never due until resumed
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (next_attempt_at);
CREATE TABLE IF NOT EXISTS recipients (
    internal_id  INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    address      TEXT    NOT NULL,
    last_error   TEXT,
    PRIMARY KEY (internal_id, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS crashes (
    internal_id  INTEGER PRIMARY KEY,  -- a message whose delivery crashed exchsim's own code
    count        INTEGER NOT NULL,
    poisoned_at  INTEGER,              -- set: in the Poison queue (never retried automatically)
    last_error   TEXT
);
"""

_MIGRATE_FROM_1 = """
CREATE TABLE IF NOT EXISTS crashes (
    internal_id  INTEGER PRIMARY KEY,
    count        INTEGER NOT NULL,
    poisoned_at  INTEGER,
    last_error   TEXT
)
"""

_MIGRATE_FROM_2 = "ALTER TABLE messages ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0"

COLUMNS = ("internal_id, message_id, sender, data, received_at, attempts, next_attempt_at, "
           "last_error, metadata")

# SQLite's primary result codes that mean "this file is damaged" (rather than busy, locked,
# read-only, out of space ...).
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

MARKER_SUFFIX = ".marker"
_SIDE_FILES = ("", "-wal", "-shm")
_MAX_PROBES = 48  # salvage: how often one scan may jump over an unreadable stretch


class QueueUnavailableError(Exception):
    """The queue file cannot be used for a reason that is not damage; it was left untouched."""


class _Damaged(Exception):
    """The file at the queue's path is damaged (the text says how)."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :func:`open_queue_file` did with a damaged queue file."""

    path: Path
    reason: str
    moved_to: Path | None
    """Where the damaged file now is; None when there was nothing at the path."""
    found: int
    """Messages found in the damaged file (by any readable row or index)."""
    salvaged: int
    """Of those, the messages copied whole into the new queue."""

    def describe(self) -> str:
        reason = " ".join(self.reason.split())  # one line, whatever SQLite said
        text = f"queue {self.path} is damaged ({reason}); "
        if self.moved_to is not None:
            text += f"moved it to {self.moved_to.name}; "
        if self.found:
            text += f"salvaged {self.salvaged} of the {self.found} messages found into a new queue"
            if self.salvaged < self.found and self.moved_to is not None:
                text += f" (the other {self.found - self.salvaged} stay in {self.moved_to.name})"
        else:
            text += "no message could be read from it; started a new, empty queue"
        return text


def open_queue_file(path: Path, now: datetime.datetime) -> tuple[sqlite3.Connection,
                                                                 Recovery | None]:
    """Open (creating if needed) and check the queue file; recover it if it is damaged.

    Returns the connection (WAL, synchronous=FULL, schema current) and, when the file was
    damaged, what was done about it. Raises :class:`QueueUnavailableError` otherwise.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = _marker(path)
    try:
        _precheck(path, marker)
        conn = _connect(path, expect_queue=marker.exists())
    except _Damaged as damage:
        recovery = _recover(path, str(damage), now)
        log.error("%s", recovery.describe())
        try:
            conn = _connect(path, expect_queue=False)
        except _Damaged as again:
            raise QueueUnavailableError(f"queue {path}: the new queue file is damaged too "
                                        f"({again})") from again
        _write_marker(path, now)
        return conn, recovery
    if not marker.exists():
        _write_marker(path, now)
    return conn, None


# --- checks ---------------------------------------------------------------------------------


def _marker(path: Path) -> Path:
    return path.with_name(path.name + MARKER_SUFFIX)


def _created(marker: Path) -> str:
    try:
        created = json.loads(marker.read_text(encoding="utf-8"))["created"]
    except (OSError, ValueError, KeyError, TypeError):
        return "at an unknown time"
    return f"on {created}"


def _precheck(path: Path, marker: Path) -> None:
    """Damage that SQLite would not report: not a file, or a queue that lost its file."""
    if path.is_dir():
        raise _Damaged("it is a directory, not a queue file")
    if path.exists() and not path.is_file():
        raise _Damaged("it is not a regular file")
    if not marker.exists():
        return
    if not path.exists():
        raise _Damaged(f"the file is missing, but {marker.name} says the queue was created "
                       f"{_created(marker)}")
    if path.stat().st_size == 0:
        raise _Damaged(f"the file is empty (0 bytes), but {marker.name} says the queue was "
                       f"created {_created(marker)}")


def _sqlite_failure(path: Path, exc: sqlite3.Error) -> Exception:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _DAMAGE_CODES:
        return _Damaged(str(exc))
    return QueueUnavailableError(f"queue {path}: {exc}")


def _connect(path: Path, *, expect_queue: bool) -> sqlite3.Connection:
    """Open, check, configure and migrate the queue file (on the worker thread)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT only
    except sqlite3.Error as exc:
        raise _sqlite_failure(path, exc) from exc
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            text = " ".join(" ".join(problems).replace("*** in database main ***", "").split())
            raise _Damaged(f"integrity check: {text[:200]}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise QueueUnavailableError(f"queue {path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0 and expect_queue:
                raise _Damaged(f"the file holds no queue, but {_marker(path).name} says the "
                               f"queue was created {_created(_marker(path))}")
            if version == 0:
                _create_schema(conn)
            elif version in (1, 2):
                if version == 1:
                    conn.execute(_MIGRATE_FROM_1)
                columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
                if "suspended" not in columns:
                    conn.execute(_MIGRATE_FROM_2)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise QueueUnavailableError(
                    f"queue {path}: schema version {version}, this exchsim reads "
                    f"{SCHEMA_VERSION} (a newer exchsim wrote it)")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        conn.close()
        raise _sqlite_failure(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    base = _ID_BASE_MIN + (secrets.randbelow(_ID_BASE_SPAN >> 20) << 20)
    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('messages', ?)", (base,))
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


# --- recovery -------------------------------------------------------------------------------


def _recover(path: Path, reason: str, now: datetime.datetime) -> Recovery:
    """Salvage into a new file, move the damaged one aside, put the new one in its place."""
    fresh = path.with_name(path.name + ".salvage")
    for suffix in _SIDE_FILES:  # an earlier recovery that was interrupted: our own copy
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    new = _connect(fresh, expect_queue=False)
    try:
        found = salvaged = 0
        if path.is_file() and path.stat().st_size > 0:
            found, salvaged = _salvage(path, new)
        new.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        new.close()
    moved_to: Path | None = None
    if path.exists() or path.is_symlink():
        moved_to = _aside(path, now)
        for suffix in _SIDE_FILES:
            side = Path(f"{path}{suffix}")
            if side.exists() or side.is_symlink():
                os.rename(side, f"{moved_to}{suffix}")
    os.rename(fresh, path)
    _fsync_directory(path.parent)
    return Recovery(path, reason, moved_to, found, salvaged)


def _aside(path: Path, now: datetime.datetime) -> Path:
    stamp = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}.old-{stamp}")
    n = 1
    while any(Path(f"{candidate}{s}").exists() for s in _SIDE_FILES):
        n += 1
        candidate = path.with_name(f"{path.name}.old-{stamp}-{n}")
    return candidate


def _salvage(path: Path, new: sqlite3.Connection) -> tuple[int, int]:
    """Copy every message that can be read whole from the damaged file into ``new``."""
    try:
        old = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True,
                              isolation_level=None)
    except sqlite3.Error:
        return 0, 0
    try:
        ids: set[int] = set()
        for query in ("SELECT internal_id FROM messages WHERE internal_id > ? "
                      "ORDER BY internal_id",
                      "SELECT DISTINCT internal_id FROM recipients WHERE internal_id > ? "
                      "ORDER BY internal_id"):
            ids.update(_scan(old, query))
        ids.update(_read_until_error(old, "SELECT internal_id FROM messages "
                                          "INDEXED BY messages_due"))
        highest = max(ids, default=0)
        for row in _read_until_error(old, "SELECT seq FROM sqlite_sequence "
                                          "WHERE name = 'messages'"):
            highest = max(highest, row)
        salvaged = 0
        new.execute("BEGIN IMMEDIATE")
        for internal_id in sorted(ids):
            try:
                row = old.execute(f"SELECT {COLUMNS} FROM messages WHERE internal_id = ?",
                                  (internal_id,)).fetchone()
                rcpts = old.execute(
                    "SELECT position, address, last_error FROM recipients "
                    "WHERE internal_id = ? ORDER BY position", (internal_id,)).fetchall()
                if row is None or not rcpts:
                    continue
                json.loads(row[8])  # the metadata must still parse
                new.execute(f"INSERT INTO messages ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", row)
            except (sqlite3.Error, ValueError, TypeError):
                continue
            new.executemany(
                "INSERT INTO recipients (internal_id, position, address, last_error) "
                "VALUES (?, ?, ?, ?)", [(internal_id, *r) for r in rcpts])
            _salvage_crashes(old, new, internal_id)
            _salvage_suspended(old, new, internal_id)
            salvaged += 1
        new.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'messages'",
                    (highest,))
        new.execute("COMMIT")
        return len(ids), salvaged
    finally:
        old.close()


def _salvage_crashes(old: sqlite3.Connection, new: sqlite3.Connection, internal_id: int) -> None:
    """Keep a message's crash count (and its place in the Poison queue) when it can be read."""
    try:
        row = old.execute("SELECT internal_id, count, poisoned_at, last_error FROM crashes "
                          "WHERE internal_id = ?", (internal_id,)).fetchone()
    except sqlite3.Error:  # unreadable, or a version 1 file without the table
        return
    if row is not None:
        new.execute("INSERT INTO crashes (internal_id, count, poisoned_at, last_error) "
                    "VALUES (?, ?, ?, ?)", row)


def _salvage_suspended(old: sqlite3.Connection, new: sqlite3.Connection,
                       internal_id: int) -> None:
    """Keep a suspended message suspended when its flag can be read."""
    try:
        row = old.execute("SELECT suspended FROM messages WHERE internal_id = ?",
                          (internal_id,)).fetchone()
    except sqlite3.Error:  # unreadable, or a file older than version 3
        return
    if row is not None and row[0]:
        new.execute("UPDATE messages SET suspended = 1 WHERE internal_id = ?", (internal_id,))


def open_read_only(path: Path) -> sqlite3.Connection:
    """The queue file opened read-only, unchecked and unmigrated (``exchsim queue`` when the
    lab is not running). Raises :class:`QueueUnavailableError` when it cannot be read."""
    if not path.is_file():
        raise QueueUnavailableError(f"queue {path}: no such file")
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True,
                               isolation_level=None)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise QueueUnavailableError(f"queue {path}: {exc}") from exc
    if version not in (1, 2, SCHEMA_VERSION):
        conn.close()
        raise QueueUnavailableError(f"queue {path}: schema version {version}, this exchsim "
                                    f"reads {SCHEMA_VERSION}")
    return conn


def _read_until_error(conn: sqlite3.Connection, query: str) -> Iterator[int]:
    try:
        for (value,) in conn.execute(query):
            if isinstance(value, int):
                yield value
    except sqlite3.Error:
        return


def _scan(conn: sqlite3.Connection, query: str) -> Iterator[int]:
    """Read ids in order; at an unreadable stretch, jump ahead (1, 2, 4 ... ids) and go on."""
    last, jump, probes = 0, 0, 0
    while probes <= _MAX_PROBES:
        try:
            for (value,) in conn.execute(query, (last + jump,)):
                if isinstance(value, int):
                    yield value
                    last, jump = value, 0
            return
        except (sqlite3.Error, OverflowError):
            probes += 1
            jump = max(1, jump * 2)


# --- marker ---------------------------------------------------------------------------------


def _write_marker(path: Path, now: datetime.datetime) -> None:
    """Record, durably, that a queue file exists at ``path`` (see the module docstring)."""
    marker = _marker(path)
    text = json.dumps({"queue": path.name, "schema": SCHEMA_VERSION,
                       "created": now.astimezone(datetime.UTC).isoformat(timespec="seconds")})
    temporary = marker.with_name(marker.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, marker)
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
