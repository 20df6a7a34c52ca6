"""transport/notify.py with a real queue and a clock the test moves: when the delay DSN goes,
to whom, and only once; the delay switches of Set-TransportConfig (exchange.md §12.6)."""

from __future__ import annotations

import datetime
import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchsim.clock import Clock
from exchsim.config.load import load_config_text
from exchsim.config.model import Lab
from exchsim.logs.tracking import MessageTracking
from exchsim.policy import dsn
from exchsim.transport.notify import Notifier
from exchsim.transport.queue import MessageQueue, QueuedMessage
from tests.labyaml import LAB_YAML  # Contoso alone

T0 = datetime.datetime(2026, 11, 29, 3, 0, tzinfo=datetime.UTC)
ORIGINAL = b"From: alice@contoso.com\r\nSubject: plans\r\nMessage-ID: <p@x>\r\n\r\nbody\r\n"


@dataclass
class MovingClock(Clock):
    now: datetime.datetime = T0

    def utc(self) -> datetime.datetime:
        return self.now

    def local(self, zone: datetime.tzinfo | None = None) -> datetime.datetime:
        return self.now


def lab(transport: str = "{MaxReceiveSize: 10MB, MaxSendSize: 10MB}") -> Lab:
    text = LAB_YAML.replace("TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}",
                            f"TransportConfig: {transport}")
    return load_config_text(text, "notify.yaml")


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[MessageQueue]:
    q = await MessageQueue.open(tmp_path / "EX01.sqlite")
    yield q
    await q.close()


async def setup(queue: MessageQueue, config: Lab, sender: str,
                notify: dict[str, str]) -> tuple[Notifier, MovingClock, list[QueuedMessage],
                                                 QueuedMessage]:
    clock = MovingClock()
    sent: list[QueuedMessage] = []
    notifier = Notifier(config.organization, config.servers[0], clock, queue,
                        MessageTracking.disabled(), sent.append,
                        expiration=datetime.timedelta(days=2))
    params = {r: ({"NOTIFY": n} if n else {}) for r, n in notify.items()}
    metadata = {"network_message_id": "nmid"}
    encoded = dsn.encode(params)
    if encoded:
        metadata[dsn.METADATA_KEY] = encoded
    item = await queue.enqueue(message_id="<p@x>", sender=sender, recipients=list(notify),
                               data=ORIGINAL, metadata=metadata, now=T0)
    return notifier, clock, sent, item


async def test_the_delay_dsn_waits_for_the_timeout_and_goes_once(queue: MessageQueue) -> None:
    notifier, clock, sent, item = await setup(
        queue, lab(), "alice@contoso.com",
        {"a@fabrikam.example": "DELAY", "b@fabrikam.example": "", "c@fabrikam.example": "FAILURE",
         "d@fabrikam.example": "NEVER"})
    rcpts = list(item.recipients)
    clock.now = T0 + datetime.timedelta(hours=3, minutes=59)
    await notifier.delayed(item, rcpts)
    assert sent == []  # DelayNotificationTimeout: 4 hours by default
    clock.now = T0 + datetime.timedelta(hours=4, minutes=3)
    await notifier.delayed(item, rcpts)
    [report] = sent
    assert report.sender == "" and report.recipients == ("alice@contoso.com",)
    parsed = email.message_from_bytes(report.data, policy=email.policy.compat32)
    assert parsed["Subject"] == "Delivery delayed: plans"
    text = parsed.get_payload()[0].get_payload()[0].get_payload(decode=True).decode()
    assert "for the next 1 days, 19 hours and 57 minutes." in text
    status = parsed.get_payload()[1].get_payload()[1:]
    assert [s["Final-Recipient"] for s in status] == ["rfc822;a@fabrikam.example",
                                                      "rfc822;b@fabrikam.example"]
    # Remembered in the queue: the same recipients never get a second one.
    reloaded = await queue.get(item.internal_id)
    assert reloaded is not None
    assert dsn.delay_sent(reloaded.metadata) == {"a@fabrikam.example", "b@fabrikam.example"}
    clock.now += datetime.timedelta(hours=1)
    await notifier.delayed(reloaded, rcpts)
    assert len(sent) == 1


@pytest.mark.parametrize(("transport", "sender", "expected"), [
    ("{InternalDelayDsnEnabled: false}", "alice@contoso.com", 0),
    ("{InternalDelayDsnEnabled: false}", "someone@fabrikam.example", 1),
    ("{ExternalDelayDsnEnabled: false}", "someone@fabrikam.example", 0),
    ("{ExternalDelayDsnEnabled: false}", "alice@contoso.com", 1),
])
async def test_the_delay_switches_of_the_transport_config(
        queue: MessageQueue, transport: str, sender: str, expected: int) -> None:
    notifier, clock, sent, item = await setup(queue, lab(transport), sender,
                                              {"a@fabrikam.example": "DELAY,FAILURE"})
    clock.now = T0 + datetime.timedelta(hours=5)
    await notifier.delayed(item, list(item.recipients))
    assert len(sent) == expected


async def test_nothing_for_the_null_sender(queue: MessageQueue) -> None:
    notifier, clock, sent, item = await setup(queue, lab(), "",
                                              {"a@fabrikam.example": "SUCCESS,DELAY,FAILURE"})
    clock.now = T0 + datetime.timedelta(hours=5)
    await notifier.delayed(item, list(item.recipients))
    await notifier.delivered(item, list(item.recipients), relayed=True)
    assert sent == []


async def test_a_request_passed_on_gets_no_relay_dsn(queue: MessageQueue) -> None:
    notifier, _, sent, item = await setup(queue, lab(), "alice@contoso.com",
                                          {"a@fabrikam.example": "SUCCESS"})
    await notifier.delivered(item, ["a@fabrikam.example"], relayed=True, passed_on=True)
    assert sent == []
    await notifier.delivered(item, ["a@fabrikam.example"], relayed=True)
    [report] = sent
    assert b"Subject: Relayed: plans" in report.data
