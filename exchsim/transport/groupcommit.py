"""Group commit on one worker thread: many coroutines' writes, one durable flush per batch.

A caller submits its work item and waits; a single flusher task takes everything pending, runs
it as one batch on a dedicated thread (so the event loop never waits for a disk, and the
thread owns whatever state the batch function keeps), and resolves each caller with its own
result. Items that arrive while a batch runs go into the next one, so N concurrent writers
share fsyncs instead of queueing behind each other's (Postfix's cleanup/qmgr and every
database's group commit do the same). The hub's SQLite queue and Maildir delivery use it.

A caller that is cancelled does not take its item back: the item still runs (accepting a
message without replying 250 is safe; the reverse would not be). When the flusher itself is
cancelled (loop shutdown), nothing pending waits forever: those callers are cancelled too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

I = TypeVar("I")  # noqa: E741 - the usual name of an item type
R = TypeVar("R")


class GroupCommit(Generic[I, R]):
    def __init__(
        self,
        run_batch: Callable[[Sequence[I]], Sequence[R]],
        *,
        name: str = "group-commit",
        executor: ThreadPoolExecutor | None = None,
        max_batch: int = 256,
        cost: Callable[[I], int] | None = None,
        max_cost: int | None = None,
    ) -> None:
        """``run_batch`` returns one result per item, in order. ``executor``: a one-thread
        executor to share (the queue's reads run there too); by default one of its own.
        A batch holds at most ``max_batch`` items and, when ``cost`` is given, items of at
        most ``max_cost`` in all (but always at least one item)."""
        self._run_batch = run_batch
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._max_batch = max_batch
        self._cost = cost
        self._max_cost = max_cost
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        """Run ``item`` in the next batch; its result, or the batch's exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await asyncio.shield(future)

    def _take_batch(self) -> list[tuple[I, asyncio.Future[R]]]:
        count, cost = 0, 0
        for item, _ in self._pending:
            if count >= self._max_batch:
                break
            if self._cost is not None and self._max_cost is not None:
                cost += self._cost(item)
                if count and cost > self._max_cost:
                    break
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._take_batch()
                try:
                    results = await loop.run_in_executor(
                        self._executor, self._run_batch, [item for item, _ in batch])
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # every caller of the batch gets the failure
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            stranded, self._pending = self._pending, []
            for _, future in stranded:  # only when this task is cancelled
                future.cancel()

    async def drain(self) -> None:
        """Wait until everything submitted so far has run."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def close(self) -> None:
        """Finish what is pending, then stop the worker thread if it is this object's own."""
        await self.drain()
        if self._own_executor:
            await asyncio.to_thread(self._executor.shutdown, wait=True)
