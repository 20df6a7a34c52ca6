"""Repeated log lines, bounded: the first is written, the repeats are counted.

A failure that repeats (the process at its file-descriptor limit, a full disk, a destination
that keeps refusing) must not turn the diagnostic log into the thing that fills the disk. At
the file-descriptor limit asyncio alone logs ``socket.accept() out of system resource`` with a
traceback up to once per pending connection per listener on every wake-up (CPython 3.11 goes
on looping over the backlog after EMFILE), which wrote about 5 MB a second to stderr.

:class:`RepeatFilter` sits on the handler ``exchsim lab|serve`` logs through (exchsim/cli.py),
so it sees exchsim's own loggers, asyncio's and any library's alike:

- A record is keyed by its logger, its level, the first line of its message *template* (the
  ``msg`` before ``%`` arguments are merged, so ``"delivery to %s failed"`` is one key whatever
  the address) with runs of digits and hex numbers folded (asyncio builds its messages with
  file descriptors, ports and object addresses in them), and the type of its exception.
- The first record of a key is written as it is, traceback included. Repeats within the
  interval (60 s) are counted, not written. When the interval ends with repeats counted, one
  line at the same level says so: ``<first line> (repeated 12,345 times in the last 60 s)``,
  and a new interval starts; a flood that goes on gets one such line per interval. A key whose
  interval ends without repeats is forgotten, so its next occurrence is written in full again.
- At most ``max_keys`` (256) keys are tracked at once: a message template never seen before
  while the table is full is counted under one overflow key (``log lines of other kinds``), so
  even a flood of always-different messages writes a bounded amount per interval.
- Summaries are written when the filter next sees any record, when :meth:`flush_due` is called
  (the CLI calls it every second) and at exit (:meth:`flush`).

Syslog's ``last message repeated N times`` is the model. This is exchsim's diagnostic log
(stderr); the protocol log Exchange defines (exchange.md §6.1) is bounded by size and age
instead, as Exchange bounds it (exchsim/logs/protocol.py).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_INTERVAL = 60.0
DEFAULT_MAX_KEYS = 256
SUMMARY_ATTRIBUTE = "exchsim_repeat_summary"
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")
_OVERFLOW = ("", 0, "log lines of other kinds", "")
_TEXT_LIMIT = 300

Key = tuple[str, int, str, str]


@dataclass(slots=True)
class _Seen:
    start: float
    text: str  # the first line of the first record's message, as written
    name: str
    level: int
    repeats: int = 0


def record_key(record: logging.LogRecord) -> Key:
    template = str(record.msg).split("\n", 1)[0]
    exc_type = ""
    if record.exc_info and record.exc_info[0] is not None:
        exc_type = record.exc_info[0].__qualname__
    return (record.name, record.levelno, _NUMBERS.sub("#", template), exc_type)


def _first_line(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a broken %-format is the handler's to report; keep the template
        text = str(record.msg)
    line = text.split("\n", 1)[0]
    return line if len(line) <= _TEXT_LIMIT else line[:_TEXT_LIMIT] + "..."


class RepeatFilter(logging.Filter):
    """Let the first record of a kind through, count its repeats, summarize them per interval.

    ``emit`` is where summary records go (the handler the filter is installed on); a summary
    record carries the attribute ``exchsim_repeat_summary`` and always passes.
    """

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float],
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        super().__init__()
        self.emit = emit
        self.interval = interval
        self.clock = clock
        self.max_keys = max_keys
        self.suppressed = 0  # records not written, in all; for tests and curiosity
        self._seen: dict[Key, _Seen] = {}
        self._next_sweep = math.inf  # when the first tracked interval ends
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, SUMMARY_ATTRIBUTE, False):
            return True
        now = self.clock()
        key = record_key(record)
        with self._lock:
            due = self._sweep(now) if now >= self._next_sweep else []
            seen = self._seen.get(key)
            if seen is None and len(self._seen) >= self.max_keys:
                key = _OVERFLOW
                seen = self._seen.get(key)
                if seen is None:  # the overflow key's first record is counted, not written
                    seen = self._seen[key] = _Seen(now, _OVERFLOW[2], "exchsim", logging.WARNING)
                    self._next_sweep = min(self._next_sweep, now + self.interval)
            if seen is None:
                self._seen[key] = _Seen(now, _first_line(record), record.name, record.levelno)
                self._next_sweep = min(self._next_sweep, now + self.interval)
                passed = True
            else:
                seen.repeats += 1
                self.suppressed += 1
                passed = False
        self._write(due)
        return passed

    def flush_due(self) -> None:
        """Write the summaries of intervals that have ended."""
        with self._lock:
            due = self._sweep(self.clock())
        self._write(due)

    def flush(self) -> None:
        """Write every pending summary now (at exit), whatever is left of its interval."""
        now = self.clock()
        with self._lock:
            due = [self._summary(seen, now) for seen in self._seen.values() if seen.repeats]
            self._seen.clear()
        self._write(due)

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        """Summaries of the intervals that have ended; ``_next_sweep`` is when the next ends."""
        due: list[logging.LogRecord] = []
        next_end = math.inf
        for key, seen in list(self._seen.items()):
            if now - seen.start >= self.interval:
                if not seen.repeats:
                    del self._seen[key]
                    continue
                due.append(self._summary(seen, now))
                seen.start, seen.repeats = now, 0
            next_end = min(next_end, seen.start + self.interval)
        self._next_sweep = next_end
        return due

    def _summary(self, seen: _Seen, now: float) -> logging.LogRecord:
        seconds = max(1, round(now - seen.start))
        if seen.text is _OVERFLOW[2]:
            record = logging.LogRecord(
                seen.name, seen.level, __file__, 0,
                "%s log lines of other kinds not written in the last %d s (more than %d kinds)",
                (f"{seen.repeats:,}", seconds, self.max_keys), None)
            setattr(record, SUMMARY_ATTRIBUTE, True)
            return record
        times = "once" if seen.repeats == 1 else f"{seen.repeats:,} times"
        record = logging.LogRecord(
            seen.name, seen.level, __file__, 0,
            "%s (repeated %s in the last %d s)", (seen.text, times, seconds), None)
        setattr(record, SUMMARY_ATTRIBUTE, True)
        return record

    def _write(self, records: list[logging.LogRecord]) -> None:
        for record in records:
            self.emit(record)


def install(handler: logging.Handler, clock: Callable[[], float],
            interval: float = DEFAULT_INTERVAL) -> RepeatFilter:
    """Put a :class:`RepeatFilter` on ``handler``, writing its summaries through it."""
    repeat_filter = RepeatFilter(handler.handle, interval=interval, clock=clock)
    handler.addFilter(repeat_filter)
    return repeat_filter
