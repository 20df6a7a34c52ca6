"""Group commit on one worker thread: many coroutines' writes, one durable flush per batch.

A caller submits its work item and waits; a single flusher task takes everything pending, runs
it as one batch on a dedicated thread (so the event loop never waits for a disk, and the
thread owns whatever state the batch function keeps), and resolves each caller with its own
result. Items that arrive while a batch runs go into the next one, so N concurrent writers
share fsyncs instead of queueing behind each other's (the queue's SQLite commit does the same;
Maildir delivery uses this one).
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
    def __init__(self, run_batch: Callable[[Sequence[I]], Sequence[R]], *, name: str,
                 max_batch: int = 256) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0

    async def submit(self, item: I) -> R:
        """Run ``item`` in the next batch; its result, or the batch's exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            try:
                results = await loop.run_in_executor(
                    self._executor, self._run_batch, [item for item, _ in batch])
            except Exception as exc:  # every caller of the batch gets the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        """Finish what is pending, then stop the worker thread."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        await asyncio.to_thread(self._executor.shutdown, wait=True)
