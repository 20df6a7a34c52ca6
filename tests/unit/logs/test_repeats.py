"""The repeat filter: a flood of the same log line costs a few lines, not the disk."""

from __future__ import annotations

import asyncio
import errno
import io
import logging
import socket

import pytest

from exchsim.logs.repeats import install


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Captured:
    """A stderr-like handler behind a repeat filter, as ``exchsim lab`` logs, and loggers that
    write to it. The loggers are not registered with ``logging`` (pytest's log capture attaches
    itself to every registered logger that does not propagate, and would format every record)."""

    def __init__(self, clock: FakeClock) -> None:
        self.out = io.StringIO()
        self.handler = logging.StreamHandler(self.out)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.filter = install(self.handler, clock)

    def logger(self, name: str) -> logging.Logger:
        log = logging.Logger(name, logging.INFO)
        log.addHandler(self.handler)
        log.propagate = False
        return log

    def text(self) -> str:
        return self.out.getvalue()


@pytest.fixture
def captured(clock: FakeClock) -> Captured:
    return Captured(clock)


def fail(log: logging.Logger, n: int) -> None:
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
        log.exception("delivery of %s failed", n)


def test_a_hundred_thousand_identical_errors_with_tracebacks_write_a_few_kb(
        captured: Captured, clock: FakeClock) -> None:
    repeat_filter = captured.filter
    log = captured.logger("exchsim.transport.hub")
    for n in range(100_000):
        clock.now += 0.00003  # 100,000 in 3 s
        fail(log, n)
    repeat_filter.flush()
    text = captured.text()
    assert len(text.encode()) < 2_000, len(text)
    assert text.count("Traceback") == 1
    assert text.startswith("ERROR exchsim.transport.hub: delivery of 0 failed\nTraceback")
    assert text.endswith(
        "ERROR exchsim.transport.hub: delivery of 0 failed (repeated 99,999 times in the "
        "last 3 s)\n")
    assert repeat_filter.suppressed == 99_999


def test_a_flood_that_goes_on_gets_one_summary_line_per_interval(
        captured: Captured, clock: FakeClock) -> None:
    log = captured.logger("exchsim.transport.hub")
    for n in range(8 * 60 * 5 + 1):  # eight a second for five minutes
        fail(log, n)
        clock.now += 0.125
    lines = captured.text().splitlines()
    summaries = [line for line in lines if "repeated" in line]
    assert summaries == [
        "ERROR exchsim.transport.hub: delivery of 0 failed (repeated 479 times in the last 60 s)",
        *["ERROR exchsim.transport.hub: delivery of 0 failed (repeated 480 times in the last "
          "60 s)"] * 4,
    ]
    assert captured.text().count("Traceback") == 1


def test_summaries_are_written_when_nothing_else_is_logged(
        captured: Captured, clock: FakeClock) -> None:
    repeat_filter = captured.filter
    log = captured.logger("exchsim.transport.hub")
    for n in range(3):
        fail(log, n)
    repeat_filter.flush_due()
    assert "repeated" not in captured.text()  # the interval has not ended
    clock.now += 60
    repeat_filter.flush_due()
    assert captured.text().endswith("delivery of 0 failed (repeated 2 times in the last 60 s)\n")


def test_a_quiet_interval_forgets_the_message(
        captured: Captured, clock: FakeClock) -> None:
    log = captured.logger("exchsim.transport.hub")
    fail(log, 1)
    clock.now += 61
    fail(log, 2)  # no repeats in the first interval: written in full, no summary
    assert captured.text().count("Traceback") == 2
    assert "repeated" not in captured.text()


def test_templates_loggers_and_exception_types_are_counted_apart(
        captured: Captured) -> None:
    hub = captured.logger("exchsim.transport.hub")
    for n in range(5):
        fail(hub, n)
        fail(captured.logger("exchsim.transport.mailbox"), n)
        hub.warning("queue %s is slow", n)
        try:
            raise ValueError("bad address")
        except ValueError:
            hub.exception("delivery of %s failed", n)
    text = captured.text()
    assert text.count("Traceback") == 3  # OSError and ValueError apart, two loggers apart
    assert text.count("queue 0 is slow") == 1 and "queue 1 is slow" not in text


def test_realistic_delivery_failure_lines_are_one_kind_whatever_their_arguments(
        captured: Captured, clock: FakeClock) -> None:
    """Stuck messages: one line per failed attempt, a different message and address each."""
    repeat_filter = captured.filter
    log = captured.logger("exchsim.transport.hub")
    template = ("delivery of %s to %s deferred (attempt %d, next in %s): "
                "%s %s")
    for n in range(20_000):
        clock.now += 0.001
        log.warning(template, 237172389052427 + n, f"user{n % 97}@fabrikam.com", n % 12 + 1,
                    "0:00:10", 451, "4.4.0 Primary target IP address responded with: "
                    "'421 4.3.2 Service not available'. Attempted failover to alternate host, "
                    "but that did not succeed.")
    repeat_filter.flush()
    lines = captured.text().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("WARNING exchsim.transport.hub: delivery of 237172389052427 to "
                               "user0@fabrikam.com deferred (attempt 1, next in 0:00:10): 451")
    assert lines[1].endswith("(repeated 19,999 times in the last 20 s)")


def test_numbers_in_a_message_built_without_arguments_are_folded(
        captured: Captured) -> None:
    log = captured.logger("asyncio")
    for fd in range(100):
        log.error(f"Exception in callback Handle(<fd={fd} at 0x7f3bb4e{fd:05x}>)\nwhen={fd}.5")
    assert len(captured.text().splitlines()) == 2  # the first record, both of its lines


def test_always_different_messages_are_bounded_too(
        captured: Captured, clock: FakeClock) -> None:
    repeat_filter = captured.filter
    log = captured.logger("exchsim")
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    for a in words:
        for b in words:
            for c in words:
                for d in words:
                    log.error(f"unexpected {a} {b} {c} {d}")
    clock.now += 60
    repeat_filter.flush_due()
    lines = captured.text().splitlines()
    assert len(lines) == repeat_filter.max_keys + 1
    assert lines[-1] == ("WARNING exchsim: 3,840 log lines of other kinds not written in the "
                         "last 60 s (more than 256 kinds)")


def test_asyncios_accept_failure_is_bounded(
        captured: Captured, clock: FakeClock) -> None:
    """asyncio's own logging of EMFILE on accept, through its default exception handler."""
    repeat_filter = captured.filter
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(captured.handler)
    loop = asyncio.new_event_loop()
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        for _ in range(5_000):
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError as exc:
                loop.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": listener,
                })
    finally:
        listener.close()
        loop.close()
        asyncio_log.removeHandler(captured.handler)
    clock.now += 1
    repeat_filter.flush()
    text = captured.text()
    assert text.count("Traceback") == 1
    assert text.count("socket.accept() out of system resource") == 2
    assert text.endswith("ERROR asyncio: socket.accept() out of system resource (repeated "
                         "4,999 times in the last 1 s)\n")
