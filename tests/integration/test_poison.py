"""Messages that cannot be delivered never poison the lab (issue 7, finding 2).

Bad messages are planted straight into the hub's queue (MAIL and RCPT refuse such addresses
now, but a queue written before that, or salvaged, can hold them): addresses with control
characters that no SMTP client may send, and addresses the internet sink refuses with 553.
They must be settled once each -- NDR, or dropped for the null sender -- while legitimate mail
that waited for its destination is delivered as soon as the destination is back, and the log
stays small.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import logging
import smtplib
from collections.abc import Iterator

import pytest

from exchsim.transport import notify
from exchsim.transport.ndr import DsnKind
from exchsim.transport.queue import MessageQueue
from tests.integration.conftest import RunningLab

HOST = "127.0.10.1"
RETRY = 1.0  # Lab.RetryInterval of the test lab (tests/integration/conftest.py)


class Captured(logging.Handler):
    """Everything the exchsim loggers write, formatted as the CLI formats it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, self.format(record)))

    def size(self, level: int) -> int:
        return sum(len(text) + 1 for lvl, text in self.lines if lvl >= level)

    def text(self, level: int) -> str:
        return "\n".join(text for lvl, text in self.lines if lvl >= level)


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("exchsim")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def send_smtplib(port: int, sender: str, rcpts: list[str], data: str) -> dict[str, object]:
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
        client.ehlo()
        return client.sendmail(sender, rcpts, data)  # type: ignore[return-value]


async def pending(queue: MessageQueue, count: int, timeout: float = 10.0) -> None:
    """Wait until ``count`` messages are pending (the hub settles each right after its hop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (now := await queue.pending_count()) != count:
        assert loop.time() < deadline, f"{now} pending, not {count}"
        await asyncio.sleep(0.05)


async def plant(queue: MessageQueue, sender: str, recipients: list[str], subject: str,
                received: datetime.datetime) -> int:
    data = (f"From: <x@fabrikam.example>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@fabrikam.example>\r\n\r\nbody\r\n").encode()
    item = await queue.enqueue(message_id=f"<{subject}@fabrikam.example>", sender=sender,
                               recipients=recipients, data=data, metadata={}, now=received)
    return item.internal_id


async def test_1100_bad_messages_do_not_starve_legitimate_deferred_mail(
        lab: RunningLab, captured: Captured) -> None:
    queue = lab.daemon.queues["EX01"]
    loop = asyncio.get_running_loop()
    # Five legitimate messages whose destination (Mailbox Delivery, 475) is down: deferred.
    await lab.daemon.pause_listener(HOST, 475)
    for n in range(5):
        refused = await asyncio.to_thread(send_smtplib, lab.port(25), "x@fabrikam.example",
                                          ["alice@contoso.com"],
                                          f"Subject: legit {n}\r\n\r\nbody\r\n")
        assert refused == {}
    # 1,100 bad ones, older than the legitimate ones (a full scan page and more, oldest first
    # was the order that starved the others).
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    plants = []
    for n in range(1000):  # null sender, an address no SMTP client may send: dropped
        bad = ["bad\x00{n}@fabrikam.example", "bad{n}\r\nRSET@fabrikam.example",
               "bad {n}@fabrikam.example", "bad\x7f{n}@fabrikam.example"][n % 4]
        plants.append(plant(queue, "", [bad.format(n=n)], f"null-{n}", old))
    for n in range(100):  # the sink refuses evil/N with 553: an NDR to the sender
        plants.append(plant(queue, f"sender{n}@fabrikam.example",
                            [f"evil/{n}@fabrikam.example", "carol@fabrikam.example"],
                            f"slash-{n}", old))
    await asyncio.gather(*plants)

    # Every bad message is settled once, none waits for a retry; the five wait for 475.
    await pending(queue, 5, timeout=60)
    assert lab.mailbox("alice@contoso.com") == []
    assert await queue.poison_count() == 0
    # Co-recipients of the refused address were delivered; each sender got one NDR.
    await lab.wait_for(lambda: len(lab.internet("sender99@fabrikam.example")) == 1)
    assert len(lab.internet("carol@fabrikam.example")) == 100
    ndr = email.message_from_bytes(lab.internet("sender7@fabrikam.example")[0])
    report = ndr.as_string()
    assert "evil/7@fabrikam.example" in report and "553 5.1.3 Mailbox name not allowed" in report
    assert "carol@fabrikam.example" not in report.split("message/rfc822")[0]

    # The destination comes back: the five go within one retry interval.
    await lab.daemon.resume_listener(HOST, 475)
    back = loop.time()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 5, timeout=10)
    elapsed = loop.time() - back
    assert elapsed <= RETRY + 0.5, elapsed
    await pending(queue, 0)

    # What the lab logs: at the CLI's default level (WARNING) a few lines -- 475 unreachable,
    # then reachable again -- and no traceback at any level; at INFO one line per failed
    # attempt, not one per scan.
    warnings = captured.text(logging.WARNING)
    assert captured.size(logging.WARNING) < 2048, warnings
    assert "Traceback" not in captured.text(logging.DEBUG)
    info = [text for lvl, text in captured.lines if lvl == logging.INFO and "delivery of" in text]
    assert len(info) <= 1100 + 5 * 20, len(info)
    assert sum(1 for text in info if "null sender: no NDR, dropped" in text) == 1000


async def test_one_bad_recipient_never_blocks_its_co_recipients(lab: RunningLab) -> None:
    queue = lab.daemon.queues["EX01"]
    now = datetime.datetime.now(datetime.UTC)
    await plant(queue, "sender@fabrikam.example",
                ["evil/1@fabrikam.example", "bad\x00@fabrikam.example", "dave@fabrikam.example",
                 "alice@contoso.com", "nobody@contoso.com"], "mixed", now)
    await lab.wait_for(lambda: len(lab.internet("sender@fabrikam.example")) == 1, timeout=10)
    assert len(lab.internet("dave@fabrikam.example")) == 1
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    await pending(queue, 0)
    # One NDR for the three refused recipients, each with its own reason.
    [ndr] = [email.message_from_bytes(m) for m in lab.internet("sender@fabrikam.example")]
    report = next(part for part in ndr.walk()
                  if part.get_content_type() == "message/delivery-status").as_string()
    assert "Final-Recipient: rfc822;evil/1@fabrikam.example" in report
    assert "Diagnostic-Code: smtp;553 5.1.3 Mailbox name not allowed" in report
    assert "Diagnostic-Code: smtp;550 5.1.3 Invalid address" in report
    assert "Diagnostic-Code: smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found" in report
    assert "dave@fabrikam.example" not in report and "alice@contoso.com" not in report


async def test_mail_for_a_destination_that_is_down_waits_then_expires(
        lab: RunningLab, captured: Captured) -> None:
    queue = lab.daemon.queues["EX01"]
    await lab.daemon.pause_listener(HOST, 475)  # Mailbox Delivery is down
    now = datetime.datetime.now(datetime.UTC)
    fresh = await plant(queue, "x@fabrikam.example", ["alice@contoso.com"], "fresh", now)
    expired = await plant(queue, "y@fabrikam.example", ["bob@contoso.com"], "stale",
                          now - datetime.timedelta(days=2, seconds=1))
    await lab.wait_for(lambda: len(lab.internet("y@fabrikam.example")) == 1, timeout=10)
    ndr = email.message_from_bytes(lab.internet("y@fabrikam.example")[0]).as_string()
    assert "550 4.4.7 QUEUE.Expired; message expired" in ndr
    assert await queue.get(expired) is None
    item = await queue.get(fresh)
    assert item is not None and item.attempts >= 1
    assert item.next_attempt_at > now  # deferred with a schedule
    assert "cannot reach mailbox EX01" in captured.text(logging.WARNING)
    assert "expired after 2 days" in captured.text(logging.WARNING)
    await lab.daemon.resume_listener(HOST, 475)
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1, timeout=5)
    assert lab.mailbox("bob@contoso.com") == []


async def test_a_message_that_crashes_delivery_twice_goes_to_the_poison_queue(
        lab: RunningLab, captured: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bug in exchsim's own code that only some messages trigger: building their NDR fails.
    real = notify.build_dsn

    def build_dsn(kind: DsnKind, **kwargs: object) -> bytes:
        if b"Subject: crash" in kwargs["original"]:  # type: ignore[operator]
            raise RuntimeError("a bug triggered by this message")
        return real(kind, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(notify, "build_dsn", build_dsn)
    queue = lab.daemon.queues["EX01"]
    now = datetime.datetime.now(datetime.UTC)
    crashing = [await plant(queue, "sender@fabrikam.example", ["nobody@contoso.com"],
                            f"crash-{n}", now) for n in range(20)]
    # The others keep flowing meanwhile.
    refused = await asyncio.to_thread(send_smtplib, lab.port(25), "x@fabrikam.example",
                                      ["alice@contoso.com"], "Subject: fine\r\n\r\nbody\r\n")
    assert refused == {}
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await queue.poison_count() < 20:
        assert loop.time() < deadline
        await asyncio.sleep(0.1)
    poisoned = await queue.poisoned()
    assert sorted(p.message.internal_id for p in poisoned) == sorted(crashing)
    assert all(p.crashes == 2 for p in poisoned)
    assert poisoned[0].reason == "RuntimeError: a bug triggered by this message"
    assert await queue.pending_count() == 0
    # Never retried: nothing more is logged about them.
    errors = captured.text(logging.ERROR)
    await asyncio.sleep(2 * RETRY)
    assert captured.text(logging.ERROR) == errors
    # One ERROR line per crash, the traceback only once (the same code location every time).
    assert errors.count("Traceback") == 1
    assert len([lvl for lvl, _ in captured.lines if lvl >= logging.ERROR]) == 40
    assert errors.count("moved to the Poison queue") == 20
    # Resumed by the admin after the fix: delivered (here: NDR'd) like any message.
    monkeypatch.setattr(notify, "build_dsn", real)
    for internal_id in crashing[:2]:
        await queue.resume_poisoned(internal_id, datetime.datetime.now(datetime.UTC))
    await lab.wait_for(lambda: len(lab.internet("sender@fabrikam.example")) == 2, timeout=10)
