"""Suspend-Queue and Resume-Queue with ``exchsim queue`` on a running lab (exchange.md §8.5): a
suspended delivery queue shows Status Suspended, takes new messages and delivers none, even
when its next hop is back and the queue is retried, until it is resumed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import RunningLab, start_lab
from tests.integration.sendlab import Mta, lab_text, submit
from tests.integration.test_queue_cli import exchsim_queue, queue_json

SMART_HOST = """
  - Name: Via Smarthost
    AddressSpaces: ["fabrikam.example"]
    SmartHosts: [smarthost.lab.example]
"""
DNS = """
  A:
    smarthost.lab.example: 127.0.10.70
"""
SLOW = ('Address: 127.0.10.1, Version: "15.2"}',
        'Address: 127.0.10.1, Version: "15.2", TransientFailureRetryInterval: "00:01:00", '
        'MessageRetryInterval: "00:01:00"}')


@pytest.fixture
async def lab(tmp_path: Path) -> Any:
    text = lab_text(SMART_HOST, DNS).replace(*SLOW)
    config = tmp_path / "lab.yaml"
    config.write_text(text, encoding="utf-8")
    running = await start_lab(text, tmp_path / "data")
    mta = Mta("127.0.10.70", running.port(25))
    try:
        yield running, config, mta
    finally:
        await mta.stop()
        await running.daemon.stop()


async def _queue(running: RunningLab, config: Path, count: int) -> dict[str, Any]:
    """The smart host's delivery queue once it holds ``count`` messages."""
    for _ in range(200):
        found = [q for q in await queue_json(running, config, "get")
                 if q["DeliveryType"] == "SmartHostConnectorDelivery"
                 and q["MessageCount"] == count]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no smart host queue with {count} message(s)")


async def test_a_suspended_queue_holds_its_messages_until_resumed(
        lab: tuple[RunningLab, Path, Mta]) -> None:
    running, config, mta = lab
    await submit(running.port(587), "one@fabrikam.example", "first")  # the smart host is down
    queue = await _queue(running, config, 1)
    assert queue["Status"] == "Retry"
    identity = queue["Identity"]

    code, out, err = await exchsim_queue(running, config, "suspend-queue", identity)
    assert code == 0 and "suspended" in out, err
    [shown] = [q for q in await queue_json(running, config, "get") if q["Identity"] == identity]
    assert shown["Status"] == "Suspended"

    # The smart host is back and the queue retried: still nothing leaves; new mail enters.
    await mta.start()
    code, _, err = await exchsim_queue(running, config, "retry", identity)
    assert code == 0, err
    await submit(running.port(587), "two@fabrikam.example", "second")
    queue = await _queue(running, config, 2)
    assert queue["Status"] == "Suspended"
    await asyncio.sleep(1.5)
    assert mta.messages == []

    code, out, err = await exchsim_queue(running, config, "resume-queue", identity)
    assert code == 0 and "resumed" in out, err
    await running.wait_for(lambda: len(mta.messages) == 2)
    assert sorted(m.rcpt_tos[0] for m in mta.messages) == ["one@fabrikam.example",
                                                            "two@fabrikam.example"]
    # Resuming a queue that is not suspended, or suspending a persistent one, is refused.
    code, _, err = await exchsim_queue(running, config, "suspend-queue", "Submission")
    assert code == 1 and "delivery queue" in err
    code, _, err = await exchsim_queue(running, config, "resume-queue", "EX01\\99")
    assert code == 1 and "no queue" in err
