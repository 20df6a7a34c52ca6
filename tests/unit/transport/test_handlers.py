"""The hub and Front End message handlers, called directly with an accepted message.

The messages come from the real session core (run without sockets by the transcript harness),
so each carries the context a session would give it; no session object is involved. The hub
handler commits into a real queue; the Front End handler proxies to a real hub listener.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from exchsim.policy.headers import parse_message
from exchsim.smtp.message import AcceptedMessage
from exchsim.transport.frontend import FrontendProxy, HubEndpoint
from exchsim.transport.hub import HubReceiver
from exchsim.transport.mailbox import MailboxDeliveryReceiver
from exchsim.transport.queue import MessageQueue, QueuedMessage
from tests.integration.conftest import FAST, FAST_LAB_YAML, start_lab, with_connectors
from tests.unit.smtp.harness import Runtime, Transcript, lab_with

LAB = lab_with()


def accepted(port: int, body: bytes, *, peer: str = "127.0.0.1", sender: str = "a@fabrikam.example",
             helo: str = "client.example", runtime: Runtime | None = None) -> AcceptedMessage:
    """A message as the core hands it over after DATA on ``port``."""
    t = Transcript(runtime or Runtime(LAB), port, peer=peer)
    t.feed(f"EHLO {helo}\r\nMAIL FROM:<{sender}>\r\nRCPT TO:<alice@contoso.com>\r\nDATA\r\n"
           .encode() + body + b".\r\n")
    [message] = t.delivered
    return message


async def test_hub_commits_stamps_and_hands_over(tmp_path: Path) -> None:
    queue = await MessageQueue.open(tmp_path / "q.sqlite")
    handed: list[QueuedMessage] = []
    runtime = Runtime(LAB)
    hub = HubReceiver(runtime.server, runtime.clock, queue, handed.append)
    try:
        message = accepted(25, b"X-MS-Exchange-Organization-AuthAs: Internal\r\n"
                               b"Subject: hi\r\n\r\nbody\r\n")
        reply = await hub(message)
        assert reply.code == 250 and reply.enhanced == "2.6.0"
        assert "Hostname=ex01.contoso.com" in reply.text
        [item] = handed
        stored = await queue.get(item.internal_id)
        assert stored is not None and stored.recipients == ("alice@contoso.com",)
        headers = parse_message(stored.data)
        received = headers.values("Received")[0]
        assert received.startswith("from client.example (127.0.0.1) by ex01.contoso.com")
        # The header firewall: an anonymous client cannot say it is Internal.
        assert headers.values("X-MS-Exchange-Organization-AuthAs") == ["Anonymous"]
        assert headers.first("X-MS-Exchange-Organization-Network-Message-Id")
        assert stored.metadata["client_ip"] == "127.0.0.1"
    finally:
        await queue.close()


async def test_hub_refuses_a_looping_message_and_keeps_nothing(tmp_path: Path) -> None:
    queue = await MessageQueue.open(tmp_path / "q.sqlite")
    handed: list[QueuedMessage] = []
    runtime = Runtime(LAB)
    hub = HubReceiver(runtime.server, runtime.clock, queue, handed.append)
    try:
        loop = b"".join(b"Received: from x%d by y\r\n" % n for n in range(70))
        reply = await hub(accepted(25, loop + b"Subject: loop\r\n\r\nbody\r\n"))
        assert reply.render() == "554 5.4.6 Hop count exceeded - possible mail loop"
        assert handed == [] and await queue.pending_count() == 0
    finally:
        await queue.close()


async def test_frontend_proxies_with_the_session_context_and_keeps_one_hop(
        tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(FAST_LAB_YAML, FAST), tmp_path / "data")
    try:
        node = lab.daemon.nodes["EX01"]
        frontend = node.frontend
        assert frontend is not None
        runtime = Runtime(lab.lab)
        first = accepted(25, b"Subject: one\r\n\r\nbody\r\n", peer="127.0.0.77",
                         runtime=runtime)
        reply = await frontend(first)
        assert reply.code == 250 and reply.enhanced == "2.6.0"
        # The hub's Received line names the Front End server that proxied the message; the
        # client (which XPROXYFROM named) is only on the Front End's (exchange.md §12.1).
        await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
        received = parse_message(lab.mailbox("alice@contoso.com")[0]).values("Received")
        hub_line = next(r for r in received if "via" not in r)
        assert hub_line.startswith("from ex01.contoso.com (127.0.10.1) by ex01.contoso.com")
        assert [r for r in received if "client.example" in r] == [
            r for r in received if "via Frontend Transport" in r]
        assert "from client.example (127.0.0.77) by ex01.contoso.com" in received[-1]
        # A second message of the same session goes over the same hub session.
        hop = frontend._hops[first.context.session_id].client
        again = AcceptedMessage(
            first.mail_from, first.mail_params, first.recipients, first.data, first.facts,
            first.context, first.received_seconds)
        assert (await frontend(again)).code == 250
        assert frontend._hops[first.context.session_id].client is hop
        frontend.session_closed(first.context.session_id)
        assert first.context.session_id not in frontend._hops and hop.broken
    finally:
        await lab.daemon.stop()


async def test_frontend_answers_prx4_when_no_hub_answers(tmp_path: Path) -> None:
    runtime = Runtime(LAB)
    lab = LAB
    closed = HubEndpoint("127.0.10.1", 9)  # nothing listens on the discard port here
    frontend = FrontendProxy(lab.server("EX01"), runtime.clock, lambda: None, closed, closed)
    t = Transcript(runtime, 25)
    t.feed(b"EHLO c\r\nMAIL FROM:<a@fabrikam.example>\r\nRCPT TO:<alice@contoso.com>\r\n"
           b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
    [message] = t.delivered
    reply = await frontend(message)
    assert reply.render() == "451 4.7.0 Temporary server error. Please try again later. PRX4"
    assert ("*", "", "Failed to proxy message to 127.0.10.1:9: 451 5.7.3 Cannot load Internal "
            "Transport Certificate. Exchange Server authentication failed.") in (
        runtime.logs[-1].events)


async def test_mailbox_delivery_drops_a_message_id_the_mailbox_already_holds(
    tmp_path: Path,
) -> None:
    runtime = Runtime(LAB)
    receiver = MailboxDeliveryReceiver(runtime.server, runtime.clock, tmp_path / "mailboxes")
    new = tmp_path / "mailboxes" / "alice@contoso.com" / "new"

    def copy(message_id: str, network_id: str) -> AcceptedMessage:
        return accepted(25, f"Message-ID: {message_id}\r\n"
                            f"X-MS-Exchange-Organization-Network-Message-Id: {network_id}\r\n"
                            f"\r\nbody\r\n".encode(), runtime=runtime)

    try:
        # The client's retry (a new queue entry, so a new Network-Message-Id), even in the
        # same batch as the first copy; the hub's own redelivery; then another message.
        replies = await asyncio.gather(receiver(copy("<m1@x.example>", "n1")),
                                       receiver(copy("<m1@x.example>", "n2")))
        assert [r.code for r in replies] == [250, 250]
        assert len(list(new.iterdir())) == 1
        assert (await receiver(copy("<m1@x.example>", "n1"))).code == 250
        assert len(list(new.iterdir())) == 1
        await receiver(copy("<m2@x.example>", "n1"))
        assert len(list(new.iterdir())) == 2
    finally:
        await receiver.close()
    # A new process knows what is in the Maildir already.
    again = MailboxDeliveryReceiver(runtime.server, runtime.clock, tmp_path / "mailboxes")
    try:
        await again(copy("<m1@x.example>", "n3"))
        assert len(list(new.iterdir())) == 2
    finally:
        await again.close()
