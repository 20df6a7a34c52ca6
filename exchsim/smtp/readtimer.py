"""One timer per session for the limits on its reads (inactivity and connection timeouts).

``asyncio.timeout`` around every read costs a context object, a timer handle and a task lookup
per command line and per DATA line. A session reads in a strict sequence, so one lazily moved
timer does the same job: each read sets the moment it must be done by; the timer, armed at the
earliest such moment, checks when it fires whether a read is still waiting past its limit and
only then cancels the session's task, which the read sees as ``TimeoutError``. A read that
finishes costs two attribute writes; the timer moves at most once per limit period.

Used as ``with timer.limit(at): await reader.readuntil(...)`` from the session's own task.
"""

from __future__ import annotations

import asyncio
import types

__all__ = ["ReadTimer"]


class ReadTimer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._limit_at: float | None = None  # set while a read waits
        self._fired = False

    def limit(self, at: float) -> ReadTimer:
        """The next read must finish by loop time ``at`` (a context manager)."""
        self._limit_at = at
        return self

    def __enter__(self) -> None:
        assert self._limit_at is not None, "use limit(at) as the context manager"
        task = asyncio.current_task(self._loop)
        assert task is not None
        self._task = task
        handle = self._handle
        if handle is None or handle.when() > self._limit_at:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(self._limit_at, self._fire)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self._limit_at = None
        if self._fired:
            self._fired = False
            assert self._task is not None
            if self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def _fire(self) -> None:
        self._handle = None
        if self._limit_at is None or self._task is None:
            return  # no read is waiting: the timer is re-armed by the next one
        if self._loop.time() < self._limit_at:
            self._handle = self._loop.call_at(self._limit_at, self._fire)
            return
        self._fired = True
        self._task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
