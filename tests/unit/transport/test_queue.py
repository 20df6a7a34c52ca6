"""The hub's durable queue: durability before the 250, group commit, due/defer/complete/lease."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import inspect
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import exchsim
from exchsim.transport.queue import SCHEMA_VERSION, MessageQueue, QueueClosedError, QueuedMessage

T0 = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
SECOND = datetime.timedelta(seconds=1)
DATA = b"From: a@contoso.com\r\nTo: b@contoso.com\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[MessageQueue]:
    q = await MessageQueue.open(tmp_path / "queue" / "EX01.sqlite")
    yield q
    await q.close()


async def put(q: MessageQueue, *recipients: str, now: datetime.datetime = T0,
              data: bytes = DATA, sender: str = "a@contoso.com") -> int:
    queued = await q.enqueue(
        message_id="<m@contoso.com>", sender=sender, recipients=recipients or ("b@contoso.com",),
        data=data, metadata={"client_ip": "127.0.0.1"}, now=now,
    )
    return queued.internal_id


def ids(messages: list[QueuedMessage]) -> list[int]:
    return [m.internal_id for m in messages]


async def test_enqueue_round_trip(queue: MessageQueue) -> None:
    local = T0.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    fresh = await queue.enqueue(
        message_id="<abc@contoso.com>", sender="", recipients=["x@contoso.com", "y@fabrikam.com"],
        data=DATA, metadata={"auth_as": "Anonymous", "note": "é"}, now=local,
    )
    internal_id = fresh.internal_id
    got = await queue.get(internal_id)
    assert got == fresh  # what enqueue returns is what the queue gives back
    assert got == QueuedMessage(
        internal_id=internal_id,
        message_id="<abc@contoso.com>",
        sender="",
        recipients=("x@contoso.com", "y@fabrikam.com"),
        data=DATA,
        received_at=T0,
        attempts=0,
        next_attempt_at=T0,
        metadata={"auth_as": "Anonymous", "note": "é"},
    )
    assert got.received_at.utcoffset() == datetime.timedelta(0)
    assert internal_id >= 2**40  # looks like an Exchange InternalId
    assert await queue.get(internal_id + 1) is None
    assert await queue.pending_count() == 1


async def test_ids_increase(queue: MessageQueue) -> None:
    first = await put(queue)
    second = await put(queue)
    assert second > first


async def test_bad_input_is_rejected(queue: MessageQueue) -> None:
    with pytest.raises(ValueError, match="aware"):
        await put(queue, now=datetime.datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="recipient"):
        await queue.enqueue(message_id="<m@x>", sender="", recipients=[], data=DATA,
                            metadata={}, now=T0)
    with pytest.raises(ValueError, match="aware"):
        await queue.due(datetime.datetime(2024, 1, 1))
    assert await queue.pending_count() == 0


async def test_due_is_oldest_first_and_respects_now_and_limit(queue: MessageQueue) -> None:
    later = await put(queue, now=T0 + 2 * SECOND)
    early = await put(queue, now=T0)
    middle = await put(queue, now=T0 + SECOND)
    assert await queue.due(T0 - SECOND) == []
    assert ids(await queue.due(T0)) == [early]
    assert ids(await queue.due(T0 + 10 * SECOND)) == [early, middle, later]
    assert ids(await queue.due(T0 + 10 * SECOND, limit=2)) == [early, middle]
    assert await queue.due(T0 + 10 * SECOND, limit=0) == []


async def test_defer_keeps_recipients_and_postpones(queue: MessageQueue) -> None:
    mid = await put(queue, "r1@contoso.com", "r2@contoso.com")
    retry = T0 + datetime.timedelta(minutes=10)
    await queue.defer(mid, ["r1@contoso.com"], next_attempt_at=retry,
                      reason="451 4.4.0 connection refused")
    assert await queue.due(retry - SECOND) == []
    [item] = await queue.due(retry)
    assert item.recipients == ("r1@contoso.com", "r2@contoso.com")
    assert item.attempts == 1
    assert item.next_attempt_at == retry
    assert item.last_error == "451 4.4.0 connection refused"
    await queue.defer(mid, ["r1@contoso.com"], next_attempt_at=retry + SECOND, reason="again")
    got = await queue.get(mid)
    assert got is not None and got.attempts == 2
    assert await queue.pending_count() == 1


async def test_due_is_by_next_attempt_so_failing_messages_cannot_starve_others(
        queue: MessageQueue) -> None:
    # A message deferred long ago, then a page full of older messages that keep failing and
    # were deferred after it: the first is handed out first, however many the others are.
    waiting = await put(queue, now=T0 + 5 * SECOND)
    await queue.defer(waiting, ["b@contoso.com"], next_attempt_at=T0 + 20 * SECOND,
                      reason="destination down")
    stuck = [await put(queue, now=T0) for _ in range(30)]
    for n, internal_id in enumerate(stuck):
        await queue.defer(internal_id, ["b@contoso.com"],
                          next_attempt_at=T0 + 21 * SECOND + n * datetime.timedelta(
                              milliseconds=1), reason="451 try later")
    page = await queue.due(T0 + 60 * SECOND, limit=10)
    assert ids(page)[0] == waiting
    assert ids(page)[1:] == stuck[:9]


async def test_next_due_is_the_earliest_scheduled_attempt(queue: MessageQueue) -> None:
    assert await queue.next_due(T0) is None
    first = await put(queue)
    second = await put(queue)
    await queue.defer(first, ["b@contoso.com"], next_attempt_at=T0 + 5 * SECOND, reason="x")
    await queue.defer(second, ["b@contoso.com"], next_attempt_at=T0 + 3 * SECOND, reason="x")
    assert await queue.next_due(T0) == T0 + 3 * SECOND
    assert await queue.next_due(T0 + 3 * SECOND) == T0 + 5 * SECOND
    for _ in range(2):  # poisoned: never due, so never the next
        await queue.record_crash(second, reason="x", now=T0, retry_at=T0 + SECOND)
    assert await queue.next_due(T0) == T0 + 5 * SECOND


async def test_defer_records_each_recipients_own_reason(queue: MessageQueue) -> None:
    mid = await put(queue, "r1@contoso.com", "r2@contoso.com")
    await queue.defer(mid, ["r1@contoso.com", "r2@contoso.com"], next_attempt_at=T0 + SECOND,
                      reason="451 busy", reasons={"r2@contoso.com": "452 full"})
    conn = sqlite3.connect(queue.path)
    try:
        rows = dict(conn.execute("SELECT address, last_error FROM recipients").fetchall())
    finally:
        conn.close()
    assert rows == {"r1@contoso.com": "451 busy", "r2@contoso.com": "452 full"}


async def test_a_message_that_crashes_twice_is_poisoned(tmp_path: Path) -> None:
    path = tmp_path / "queue" / "EX01.sqlite"
    queue = await MessageQueue.open(path)
    try:
        bad = await put(queue, "r1@contoso.com")
        good = await put(queue, "r2@contoso.com")
        retry = T0 + 10 * SECOND
        assert await queue.record_crash(bad, reason="RuntimeError: boom", now=T0,
                                        retry_at=retry) is False
        assert ids(await queue.due(T0 + SECOND)) == [good]  # scheduled, not retried at once
        assert ids(await queue.due(retry)) == [good, bad]
        assert await queue.poison_count() == 0
        assert await queue.record_crash(bad, reason="RuntimeError: boom again", now=retry,
                                        retry_at=retry + SECOND) is True
        far = T0 + datetime.timedelta(days=3650)
        assert ids(await queue.due(far)) == [good]  # never due again
        assert await queue.pending_count() == 1
        assert await queue.poison_count() == 1
        [poisoned] = await queue.poisoned()
        assert poisoned.message.internal_id == bad
        assert poisoned.message.recipients == ("r1@contoso.com",)  # kept whole
        assert poisoned.crashes == 2
        assert poisoned.poisoned_at == retry
        assert poisoned.reason == "RuntimeError: boom again"
    finally:
        await queue.close()
    queue = await MessageQueue.open(path)  # the Poison queue is durable
    try:
        assert await queue.poison_count() == 1
        assert ids(await queue.due(far)) == [good]
        await queue.resume_poisoned(bad, far)  # the admin's Resume-Message
        assert ids(await queue.due(far)) == [good, bad]
        assert await queue.poison_count() == 0
        with pytest.raises(KeyError):
            await queue.resume_poisoned(good, far)
        await queue.complete(bad, ["r1@contoso.com"])
        assert await queue.get(bad) is None
    finally:
        await queue.close()


async def test_a_version_1_queue_file_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "EX01.sqlite"
    queue = await MessageQueue.open(path)
    mid = await put(queue)
    await queue.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE crashes")
    conn.execute("ALTER TABLE messages DROP COLUMN suspended")
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    queue = await MessageQueue.open(path)
    try:
        assert ids(await queue.due(T0)) == [mid]
        assert await queue.record_crash(mid, reason="x", now=T0, retry_at=T0) is False
        assert await queue.poison_count() == 0
    finally:
        await queue.close()


async def test_a_version_2_queue_file_is_upgraded_and_suspension_works(tmp_path: Path) -> None:
    path = tmp_path / "EX01.sqlite"
    queue = await MessageQueue.open(path)
    first, second = await put(queue), await put(queue)
    await queue.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE messages DROP COLUMN suspended")  # a version 2 file, as written
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    queue = await MessageQueue.open(path)
    try:
        assert ids(await queue.due(T0)) == [first, second]
        await queue.write(lambda c: c.execute(
            "UPDATE messages SET suspended = 1 WHERE internal_id = ?", (first,)))
        assert ids(await queue.due(T0)) == [second]  # a suspended message is never due
    finally:
        await queue.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()


async def test_complete_removes_recipients_then_message(queue: MessageQueue) -> None:
    mid = await put(queue, "r1@contoso.com", "r2@contoso.com", "r3@contoso.com")
    other = await put(queue, "r1@contoso.com")
    await queue.complete(mid, ["r2@contoso.com", "not-a-recipient@contoso.com"])
    got = await queue.get(mid)
    assert got is not None and got.recipients == ("r1@contoso.com", "r3@contoso.com")
    await queue.complete(mid, ["r1@contoso.com"])
    await queue.defer(mid, ["r3@contoso.com"], next_attempt_at=T0 + SECOND, reason="busy")
    await queue.complete(mid, ["r3@contoso.com"])
    assert await queue.get(mid) is None
    assert ids(await queue.due(T0 + 10 * SECOND)) == [other]
    assert await queue.pending_count() == 1
    with pytest.raises(KeyError):
        await queue.complete(mid, ["r3@contoso.com"])
    with pytest.raises(KeyError):
        await queue.defer(mid, ["r3@contoso.com"], next_attempt_at=T0, reason="x")


async def test_failing_operation_does_not_fail_its_batch(queue: MessageQueue) -> None:
    results = await asyncio.gather(
        put(queue), queue.complete(12345, ["x@contoso.com"]), put(queue),
        return_exceptions=True,
    )
    assert isinstance(results[1], KeyError)
    assert isinstance(results[0], int) and isinstance(results[2], int)
    assert await queue.pending_count() == 2
    assert queue.statistics().commits == 1  # one transaction, the bad op rolled back alone


async def test_lease(queue: MessageQueue) -> None:
    a = await put(queue)
    b = await put(queue)
    assert await queue.lease(a)
    assert not await queue.lease(a)
    assert queue.leased() == {a}
    assert ids(await queue.due(T0)) == [b]
    assert ids(await queue.due(T0, limit=1)) == [b]  # a leased message does not eat the limit
    queue.release(a)
    queue.release(a)  # no-op
    assert ids(await queue.due(T0)) == [a, b]
    assert not await queue.lease(b + 1000)  # not queued
    assert queue.leased() == frozenset()


async def test_concurrent_lease_has_one_winner(queue: MessageQueue) -> None:
    mid = await put(queue)
    won = await asyncio.gather(*(queue.lease(mid) for _ in range(10)))
    assert won.count(True) == 1


async def test_state_survives_reopen_but_leases_do_not(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    q = await MessageQueue.open(path)
    kept = await put(q, "r1@contoso.com", "r2@contoso.com", now=T0)
    done = await put(q, now=T0)
    await q.defer(kept, ["r2@contoso.com"], next_attempt_at=T0 + SECOND, reason="later")
    await q.complete(kept, ["r1@contoso.com"])
    await q.complete(done, ["b@contoso.com"])
    assert await q.lease(kept)
    await q.close()
    await q.close()  # idempotent
    with pytest.raises(QueueClosedError):
        await put(q)

    q = await MessageQueue.open(path)
    try:
        [item] = await q.due(T0 + SECOND)
        assert item.internal_id == kept
        assert item.recipients == ("r2@contoso.com",)
        assert item.attempts == 1 and item.last_error == "later"
        assert await q.lease(kept)
        newer = await put(q)
        assert newer > done  # AUTOINCREMENT: a deleted message's id is never reused
    finally:
        await q.close()


async def test_queue_file_is_wal(queue: MessageQueue) -> None:
    await put(queue)
    conn = sqlite3.connect(queue.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_group_commit_batches_concurrent_enqueues(queue: MessageQueue) -> None:
    got = await asyncio.gather(*(put(queue, data=DATA + str(i).encode()) for i in range(50)))
    assert len(set(got)) == 50
    stats = queue.statistics()
    assert stats.enqueued == 50
    assert stats.operations == 50
    assert stats.commits < 50
    assert stats.largest_batch > 1
    assert await queue.pending_count() == 50
    for i, internal_id in enumerate(got):
        item = await queue.get(internal_id)
        assert item is not None and item.data == DATA + str(i).encode()


async def test_enqueues_arriving_during_a_commit_share_the_next(queue: MessageQueue) -> None:
    async def client(n: int) -> None:
        for i in range(10):
            await put(queue, data=b"%d-%d" % (n, i))

    await asyncio.gather(*(client(n) for n in range(20)))
    stats = queue.statistics()
    assert stats.enqueued == 200
    assert stats.commits < 200 / 2


async def test_close_commits_what_is_pending(tmp_path: Path) -> None:
    q = await MessageQueue.open(tmp_path / "q.sqlite")
    tasks = [asyncio.create_task(put(q)) for _ in range(5)]
    await asyncio.sleep(0)  # they are waiting for their commit
    await q.close()
    got = [t.result() for t in tasks]
    q = await MessageQueue.open(tmp_path / "q.sqlite")
    try:
        assert sorted(ids(await q.due(T0))) == sorted(got)
    finally:
        await q.close()


async def test_cancelled_caller_does_not_undo_the_write(queue: MessageQueue) -> None:
    task = asyncio.create_task(put(queue))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await queue.pending_count() == 1
    assert await put(queue) > 0  # the queue still works


async def test_event_loop_keeps_running_during_commits(queue: MessageQueue) -> None:
    big = b"x" * (1024 * 1024)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.gather(*(put(queue, data=big) for _ in range(40)))
    stop.set()
    await beat
    assert len(gaps) > 1
    assert max(gaps) < 0.5


# --- crash safety -----------------------------------------------------------------------------


def payload(i: int) -> bytes:
    """The message body enqueued as number ``i`` (used by the child process and the check)."""
    seed = hashlib.sha256(str(i).encode()).digest()
    body = (seed.hex().encode() + b"\r\n") * (1 + i % 97)
    return b"Message-ID: <%d@crash.test>\r\nSubject: %d\r\n\r\n" % (i, i) + body


CHILD = """
import asyncio, datetime, hashlib, sys
from pathlib import Path
from exchsim.transport.queue import MessageQueue

{payload}

async def main(path: Path, start: int) -> None:
    q = await MessageQueue.open(path)
    now = datetime.datetime.now(datetime.UTC)
    counter = iter(range(start, start + 10**7))

    async def worker() -> None:
        for i in counter:
            internal_id = (await q.enqueue(
                message_id="<%d@crash.test>" % i, sender="s@contoso.com",
                recipients=["r%d@contoso.com" % i, "x@fabrikam.com"], data=payload(i),
                metadata={{"i": str(i)}}, now=now,
            )).internal_id
            sys.stdout.write("%d %d\\n" % (internal_id, i))
            sys.stdout.flush()

    await asyncio.gather(*(worker() for _ in range(8)))

asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
"""


def run_and_kill(script: Path, db: Path, start: int, wanted: int) -> dict[int, int]:
    env = dict(os.environ, PYTHONPATH=str(Path(exchsim.__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(start)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    printed: dict[int, int] = {}
    try:
        while len(printed) < wanted:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"child ended early: {proc.stderr.read()!r}")  # type: ignore[union-attr]
            internal_id, i = map(int, line.split())
            printed[internal_id] = i
        proc.send_signal(signal.SIGKILL)
        # Whatever the child printed before it died was acknowledged: it counts too.
        for line in proc.stdout:
            if line.endswith(b"\n"):
                internal_id, i = map(int, line.split())
                printed[internal_id] = i
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return printed


def test_acknowledged_messages_survive_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(payload=textwrap.dedent(inspect.getsource(payload))))
    db = tmp_path / "queue" / "EX01.sqlite"
    acknowledged: dict[int, int] = {}
    for round_ in range(3):  # each round reopens what the previous kill left behind
        acknowledged |= run_and_kill(script, db, start=round_ * 10**7, wanted=150)

    async def check() -> None:
        q = await MessageQueue.open(db)
        try:
            stored = {m.internal_id: m for m in await q.due(datetime.datetime.now(datetime.UTC)
                                                            + SECOND, limit=10**6)}
            assert await q.pending_count() == len(stored)
        finally:
            await q.close()
        missing = set(acknowledged) - set(stored)
        assert not missing, f"{len(missing)} acknowledged messages lost"
        for internal_id, i in acknowledged.items():
            assert stored[internal_id].metadata["i"] == str(i)
        for m in stored.values():  # nothing torn, acknowledged or not
            i = int(m.metadata["i"])
            assert m.data == payload(i)
            assert m.message_id == f"<{i}@crash.test>"
            assert m.recipients == (f"r{i}@contoso.com", "x@fabrikam.com")

    assert len(acknowledged) >= 450
    asyncio.run(check())
