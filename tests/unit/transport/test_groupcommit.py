"""Group commit: concurrent submissions share batches, each caller gets its own result."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from exchsim.transport.groupcommit import GroupCommit


async def test_concurrent_items_share_batches_on_one_thread() -> None:
    gate = threading.Event()
    batches: list[list[int]] = []
    threads: set[str] = set()

    def run(items: Sequence[int]) -> list[int]:
        gate.wait(5)  # hold the first batch so the others pile up behind it
        threads.add(threading.current_thread().name)
        batches.append(list(items))
        return [i * 10 for i in items]

    writer: GroupCommit[int, int] = GroupCommit(run, name="t")
    first = asyncio.ensure_future(writer.submit(0))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(writer.submit(i)) for i in range(1, 21)]
    await asyncio.sleep(0.05)
    gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [i * 10 for i in range(1, 21)]
    assert batches == [[0], list(range(1, 21))]
    assert len(threads) == 1
    await writer.close()


async def test_a_failing_batch_fails_its_callers_only() -> None:
    def run(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise OSError("disk full")
        return [i.upper() for i in items]

    writer: GroupCommit[str, str] = GroupCommit(run, name="t", max_batch=1)
    results = await asyncio.gather(writer.submit("a"), writer.submit("bad"), writer.submit("c"),
                                   return_exceptions=True)
    assert results[0] == "A" and results[2] == "C"
    assert isinstance(results[1], OSError)
    await writer.close()
    with pytest.raises(RuntimeError):  # closed: the worker thread is gone
        await writer.submit("d")


async def test_batches_are_bounded_by_count_and_by_cost() -> None:
    gate = threading.Event()
    batches: list[list[int]] = []

    def run(items: Sequence[int]) -> list[int]:
        gate.wait(5)
        batches.append(list(items))
        return list(items)

    writer: GroupCommit[int, int] = GroupCommit(run, name="t", max_batch=3,
                                                cost=lambda n: n, max_cost=10)
    first = asyncio.ensure_future(writer.submit(0))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(writer.submit(n)) for n in (1, 2, 3, 4, 20, 5)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *rest)
    # at most 3 items, at most 10 in cost, but an item dearer than that still goes alone
    assert batches == [[0], [1, 2, 3], [4], [20], [5]]
    await writer.close()
