"""Keep a long-running task (a hub's delivery agent) running across unexpected exceptions.

:func:`keep_running` restarts the task after an exception, after a delay that doubles from
:attr:`RestartPolicy.first_delay` up to :attr:`RestartPolicy.max_delay`, with one ERROR line
each time (the exception's type and text; the traceback only at DEBUG). When the task fails
:attr:`RestartPolicy.max_failures` times within :attr:`RestartPolicy.window` seconds it gives up
and raises :class:`GaveUp`; the daemon then stops the process with a non-zero exit status, so a
server that cannot deliver does not sit there accepting mail it never sends on. With the
defaults (1 s doubling to 30 s, 5 failures within 5 minutes) a task that fails at once every
time is given up after about 15 s; one that fails now and then is restarted for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["GaveUp", "RestartPolicy", "keep_running"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    first_delay: float = 1.0
    """Seconds before the first restart; doubled for each further failure."""
    max_delay: float = 30.0
    """The longest wait between a failure and the restart."""
    max_failures: int = 5
    """This many failures within :attr:`window` seconds: give up."""
    window: float = 300.0
    """Seconds a failure counts for; a run this long also resets the delay."""


class GaveUp(RuntimeError):
    """The task failed too often to keep it running."""


def _summary(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def keep_running(name: str, run: Callable[[], Awaitable[None]],
                       policy: RestartPolicy = RestartPolicy()) -> None:
    """Await ``run()``; after an exception, restart it as the policy says.

    Returns when ``run()`` returns; cancellation goes through; raises :class:`GaveUp` when
    the task fails too often.
    """
    loop = asyncio.get_running_loop()
    failures: deque[float] = deque()
    delay = policy.first_delay
    while True:
        started = loop.time()
        try:
            await run()
            return
        except Exception as exc:
            now = loop.time()
            failures.append(now)
            while failures and failures[0] < now - policy.window:
                failures.popleft()
            if now - started >= policy.window:
                delay = policy.first_delay
            log.debug("%s failed", name, exc_info=exc)
            if len(failures) >= policy.max_failures:
                raise GaveUp(f"{name} failed {len(failures)} times within "
                             f"{policy.window:g} s, giving up; the last time: "
                             f"{_summary(exc)}") from exc
            log.error("%s stopped unexpectedly (%s); restarting in %g s (failure %d of %d "
                      "allowed within %g s)", name, _summary(exc), delay, len(failures),
                      policy.max_failures - 1, policy.window)
        await asyncio.sleep(delay)
        delay = min(delay * 2, policy.max_delay)
