"""ReadTimer: one lazily moved timer enforces each read's limit, like asyncio.timeout."""

from __future__ import annotations

import asyncio

import pytest

from exchsim.smtp.readtimer import ReadTimer


async def test_a_read_that_waits_past_its_limit_times_out() -> None:
    loop = asyncio.get_running_loop()
    timer = ReadTimer(loop)
    never: asyncio.Future[bytes] = loop.create_future()
    started = loop.time()
    with pytest.raises(TimeoutError), timer.limit(loop.time() + 0.05):
        await never
    assert 0.04 <= loop.time() - started < 1.0
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    timer.close()


async def test_reads_that_finish_in_time_never_time_out_and_the_timer_moves_lazily() -> None:
    loop = asyncio.get_running_loop()
    timer = ReadTimer(loop)
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def feed() -> None:
        for n in range(8):
            await asyncio.sleep(0.04)
            queue.put_nowait(n)

    feeder = asyncio.ensure_future(feed())
    got = []
    for _ in range(8):  # 8 reads x 40 ms = 320 ms in all, each well inside its own 150 ms
        with timer.limit(loop.time() + 0.15):
            got.append(await queue.get())
    await feeder
    assert got == list(range(8))
    # Between reads (the server busy, not the client idle) nothing fires.
    await asyncio.sleep(0.1)
    with timer.limit(loop.time() + 0.05):
        await asyncio.sleep(0.01)
    timer.close()


async def test_an_earlier_limit_than_the_armed_one_is_honoured() -> None:
    loop = asyncio.get_running_loop()
    timer = ReadTimer(loop)
    with timer.limit(loop.time() + 30):
        await asyncio.sleep(0)
    never: asyncio.Future[None] = loop.create_future()
    started = loop.time()
    with pytest.raises(TimeoutError), timer.limit(loop.time() + 0.03):
        await never
    assert loop.time() - started < 1.0
    timer.close()


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    timer = ReadTimer(loop)

    async def reader() -> None:
        with timer.limit(loop.time() + 30):
            await loop.create_future()

    task = asyncio.ensure_future(reader())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    timer.close()
