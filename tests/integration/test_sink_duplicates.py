"""The lab's internet sink drops a copy it already holds (DUPLICATEDELIVER), and a hub that
delivers a message again after a crash puts one copy of its relayed mail and of its NDR there.
Real sockets on loopback: an aiosmtpd sink and the hub's real delivery agent."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from exchsim.clock import SYSTEM_CLOCK
from exchsim.config.load import load_config_text
from exchsim.smtp.sink import SinkHandler, sink_factory
from exchsim.transport.delivery import DeliveryAgent, Endpoint
from exchsim.transport.queue import MessageQueue
from tests.integration.conftest import LAB_YAML

HOST = "127.0.0.1"


class Sink:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.handler = SinkHandler(root)
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.get_running_loop().create_server(
            sink_factory(self.handler, "internet.sink"), HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await self.handler.close()

    def files(self, address: str) -> list[bytes]:
        folder = self.root / address / "new"
        return sorted(p.read_bytes() for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[Sink]:
    running = Sink(tmp_path / "internet")
    await running.start()
    yield running
    await running.stop()


async def send(port: int, recipients: list[str], message: str, sender: str = "") -> None:
    async with aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False) as smtp:
        errors, reply = await smtp.sendmail(sender, recipients, message)
    assert errors == {} and "Message accepted for delivery" in reply


MESSAGE = "From: <a@contoso.com>\r\nMessage-ID: <same@contoso.com>\r\nSubject: one\r\n\r\nbody\r\n"


async def test_the_sink_keeps_one_copy_per_recipient_of_a_message_id(tmp_path: Path) -> None:
    sink = Sink(tmp_path / "internet")
    await sink.start()
    try:
        await send(sink.port, ["x@fabrikam.example", "y@fabrikam.example"], MESSAGE)
        await send(sink.port, ["x@fabrikam.example"], MESSAGE)
        await send(sink.port, ["Y@Fabrikam.example", "z@fabrikam.example"], MESSAGE)
        assert [len(sink.files(a)) for a in ("x@fabrikam.example", "y@fabrikam.example",
                                             "z@fabrikam.example")] == [1, 1, 1]
        assert sink.handler.duplicates == 2
        # Another Message-ID is another message.
        await send(sink.port, ["x@fabrikam.example"], MESSAGE.replace("same@", "other@"))
        assert len(sink.files("x@fabrikam.example")) == 2
    finally:
        await sink.stop()
    # The sink remembers across a restart (the lab was killed): the Maildir is the truth.
    again = Sink(tmp_path / "internet")
    await again.start()
    try:
        await send(again.port, ["x@fabrikam.example"], MESSAGE)
        assert len(again.files("x@fabrikam.example")) == 2
        assert again.handler.duplicates == 1
    finally:
        await again.stop()


async def test_the_sink_stores_every_message_without_a_message_id(sink: Sink) -> None:
    bare = "From: <a@contoso.com>\r\nSubject: no id\r\n\r\nbody\r\n"
    await send(sink.port, ["x@fabrikam.example"], bare)
    await send(sink.port, ["x@fabrikam.example"], bare)
    assert len(sink.files("x@fabrikam.example")) == 2


async def deliver_all(queue: MessageQueue, sink: Sink) -> None:
    """Run the hub's real delivery agent until the queue is empty."""
    # lab.yaml's send connector, with this sink as its smart host.
    text = LAB_YAML.replace('SmartHosts: ["[127.0.10.250]"]', f'SmartHosts: ["[{HOST}]"]')
    lab = load_config_text(text.replace("    Port: 25\n", f"    Port: {sink.port}\n"),
                           "lab.yaml")
    agent = DeliveryAgent(lab, lab.server("EX01"), SYSTEM_CLOCK, queue, lambda: None,
                          mailbox_delivery={}, internet=Endpoint(HOST, sink.port),
                          retry=datetime.timedelta(seconds=1))
    task = asyncio.create_task(agent.run())
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while await queue.pending_count():
            assert asyncio.get_running_loop().time() < deadline, "the queue did not drain"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_hub_delivering_again_after_a_crash_leaves_one_relayed_copy_and_one_ndr(
        sink: Sink, tmp_path: Path) -> None:
    """The hub delivered the message (relayed copy and NDR) and was killed before it recorded
    it: after the restart the message is pending again and everything is done a second time,
    the NDR made anew. The sink still holds one of each."""
    data = (b"From: <sender@fabrikam.example>\r\nMessage-ID: <m1@fabrikam.example>\r\n"
            b"Subject: relayed\r\n\r\nbody\r\n")
    for name in ("before", "after"):  # the same queued message, in the queue before and
        queue = await MessageQueue.open(tmp_path / name / "EX01.sqlite")  # after the crash
        try:
            await queue.enqueue(
                message_id="<m1@fabrikam.example>", sender="sender@fabrikam.example",
                recipients=["partner@fabrikam.example", "nobody@contoso.com"], data=data,
                metadata={"network_message_id": "8d1c3a52-4a0e-4e7b-9a55-1f2e3d4c5b6a"},
                now=SYSTEM_CLOCK.utc())
            await deliver_all(queue, sink)
        finally:
            await queue.close()
    assert len(sink.files("partner@fabrikam.example")) == 1
    ndrs = sink.files("sender@fabrikam.example")
    assert len(ndrs) == 1 and b"Final-Recipient: rfc822;nobody@contoso.com" in ndrs[0]
    assert sink.handler.duplicates == 2
