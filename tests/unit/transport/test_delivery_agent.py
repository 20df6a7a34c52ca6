"""The delivery agent on a real queue, without a network: what it does with a failure that is
not the message's (the queue cannot be written) and with the Poison queue at start."""

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
from tests.integration.conftest import LAB_YAML


def agent_for(queue: MessageQueue) -> DeliveryAgent:
    lab = load_config_text(LAB_YAML, "lab.yaml")
    return DeliveryAgent(lab, lab.server("EX01"), SYSTEM_CLOCK, queue, lambda: None,
                         mailbox_delivery={}, internet=Endpoint("127.0.0.1", 9),
                         retry=datetime.timedelta(seconds=1))


async def plant(queue: MessageQueue, subject: str) -> int:
    # The null sender to an unknown address of an Authoritative domain: settled without a hop.
    item = await queue.enqueue(message_id=f"<{subject}@fabrikam.example>", sender="",
                               recipients=["nobody@contoso.com"],
                               data=f"Subject: {subject}\r\n\r\nbody\r\n".encode(),
                               metadata={}, now=datetime.datetime.now(datetime.UTC))
    return item.internal_id


async def test_a_queue_that_cannot_be_written_stops_the_agent_not_the_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    queue = await MessageQueue.open(tmp_path / "EX01.sqlite")
    try:
        internal_id = await plant(queue, "kept")

        async def disk_full(*args: object, **kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(queue, "complete", disk_full)
        agent = agent_for(queue)
        with caplog.at_level(logging.DEBUG), pytest.raises(OSError, match="No space left"):
            await asyncio.wait_for(agent.run(), 10)  # restart.py restarts it, with a backoff
        assert await queue.get(internal_id) is not None  # no crash counted against it
        assert await queue.poison_count() == 0
        assert not any(r.exc_info for r in caplog.records)
    finally:
        await queue.close()


async def test_the_poison_queue_is_reported_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    queue = await MessageQueue.open(tmp_path / "EX01.sqlite")
    try:
        now = datetime.datetime.now(datetime.UTC)
        internal_id = await plant(queue, "poisoned")
        await queue.record_crash(internal_id, reason="RuntimeError: x", now=now, retry_at=now)
        await queue.record_crash(internal_id, reason="RuntimeError: x", now=now, retry_at=now)
        settled = await plant(queue, "settled")
        agent = agent_for(queue)
        with caplog.at_level(logging.WARNING):
            task = asyncio.create_task(agent.run())
            try:
                for _ in range(200):
                    if await queue.get(settled) is None:
                        break
                    await asyncio.sleep(0.02)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        assert await queue.get(settled) is None
        assert await queue.get(internal_id) is not None
        assert [r.getMessage() for r in caplog.records] == [
            "EX01: 1 message(s) in the Poison queue, not retried until resumed"]
    finally:
        await queue.close()
