"""The delivery agent is restarted after an unexpected exception, and given up on when it keeps
failing: a bounded backoff and one log line per failure, not a traceback flood."""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path

import pytest

from exchsim.clock import SYSTEM_CLOCK
from exchsim.config.load import load_config_text
from exchsim.transport.delivery import DeliveryAgent, Endpoint
from exchsim.transport.queue import MessageQueue
from exchsim.transport.restart import GaveUp, RestartPolicy, keep_running
from tests.integration.conftest import LAB_YAML

QUICK = RestartPolicy(first_delay=0.01, max_delay=0.04, max_failures=4, window=60)


async def agent_on_a_closed_queue(tmp_path: Path) -> DeliveryAgent:
    """A real delivery agent whose every scan of the queue raises (the queue is closed)."""
    lab = load_config_text(LAB_YAML, "lab.yaml")
    queue = await MessageQueue.open(tmp_path / "EX01.sqlite")
    await queue.close()
    return DeliveryAgent(lab, lab.server("EX01"), SYSTEM_CLOCK, queue, lambda: None,
                         mailbox_delivery={}, internet=Endpoint("127.0.0.1", 9),
                         retry=datetime.timedelta(seconds=10))


async def test_a_delivery_agent_that_keeps_failing_is_restarted_then_given_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = await agent_on_a_closed_queue(tmp_path)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.INFO), pytest.raises(GaveUp) as gave_up:
        await asyncio.wait_for(keep_running("delivery EX01", agent.run, QUICK), 10)
    elapsed = loop.time() - started
    assert "delivery EX01 failed 4 times within 60 s, giving up" in str(gave_up.value)
    assert "QueueClosedError" in str(gave_up.value)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 3  # one line per restart
    assert lines[0].startswith("delivery EX01 stopped unexpectedly (QueueClosedError: queue ")
    assert "restarting in 0.01 s (failure 1 of 3 allowed within 60 s)" in lines[0]
    assert "restarting in 0.04 s (failure 3 of 3" in lines[2]  # doubled, then capped
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)
    assert 0.01 + 0.02 + 0.04 <= elapsed < 5


async def test_a_task_that_fails_now_and_then_is_kept_running(
        caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}\nwith a second line")
        # the third run works (and returns, which ends the supervision)

    with caplog.at_level(logging.ERROR):
        await keep_running("delivery EX01", flaky, QUICK)
    assert len(runs) == 3
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        "delivery EX01 stopped unexpectedly (RuntimeError: failure 1 with a second line)",
        "delivery EX01 stopped unexpectedly (RuntimeError: failure 2 with a second line)",
    ]


async def test_failures_older_than_the_window_do_not_count() -> None:
    runs: list[int] = []

    async def fails_five_times() -> None:
        runs.append(1)
        if len(runs) <= 5:
            raise RuntimeError("boom")

    # Two failures within 0.05 s would give up, but the backoff spaces them wider than that.
    policy = RestartPolicy(first_delay=0.06, max_delay=0.06, max_failures=2, window=0.05)
    await asyncio.wait_for(keep_running("delivery EX01", fails_five_times, policy), 5)
    assert len(runs) == 6


async def test_cancelling_the_supervised_task_stops_it_without_a_restart() -> None:
    started = asyncio.Event()
    runs: list[int] = []

    async def forever() -> None:
        runs.append(1)
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(keep_running("delivery EX01", forever, QUICK))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs == [1]
