"""No duplicate the client did not cause (issue 7, finding 1), over real sockets.

The Front End never replays a transaction after the hub may have committed it; the end-of-data
reply never carries a line a hop client cannot read; Mailbox Transport Delivery drops a message
whose Message-ID the mailbox already holds (Exchange's DUPLICATEDELIVER).
"""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from exchsim.config.model import TransportRole as Role
from exchsim.policy.replies import Reply
from exchsim.smtp.message import AcceptedMessage
from tests.integration.conftest import RawClient, RunningLab

HOST = "127.0.10.1"
PRX4 = "451 4.7.0 Temporary server error. Please try again later. PRX4"


async def _send_raw(lab: RunningLab, data: str, rcpt: str = "alice@contoso.com") -> str:
    client = await RawClient.connect(HOST, lab.port(25))
    try:
        await client.reply()
        await client.cmd("EHLO client.example")
        assert await client.cmd("MAIL FROM:<x@fabrikam.example>") == "250 2.1.0 Sender OK"
        assert await client.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Recipient OK"
        assert await client.cmd("DATA") == "354 Start mail input; end with <CRLF>.<CRLF>"
        return await client.cmd(data + ".")
    finally:
        client.close()


async def _drained(lab: RunningLab) -> None:
    queue = lab.daemon.queues["EX01"]
    deadline = asyncio.get_running_loop().time() + 10.0
    while await queue.pending_count():
        assert asyncio.get_running_loop().time() < deadline, "the queue does not drain"
        await asyncio.sleep(0.05)


async def test_a_64kb_message_id_gets_a_definite_answer_and_lands_once(lab: RunningLab) -> None:
    message_id = "<" + "a" * 70_000 + "@fabrikam.example>"
    data = f"Message-ID: {message_id}\r\nSubject: long id\r\n\r\nbody\r\n"
    reply = await _send_raw(lab, data)
    # The id is echoed shortened; the whole reply is one short line.
    assert reply.startswith("250 2.6.0 <aaaa"), reply[:200]
    assert "...[InternalId=" not in reply and "... [InternalId=" in reply
    assert len(reply) < 1000
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    await _drained(lab)  # the mailbox's reply was read too: nothing left to retry
    await asyncio.sleep(0.3)
    stored = lab.mailbox("alice@contoso.com")
    assert len(stored) == 1
    assert f"Message-ID: {message_id}\r\n".encode() in stored[0]  # the header is untouched


def _hub_commits_then(lab: RunningLab, after_commit: str,
                      release: asyncio.Event) -> list[Reply]:
    """Wrap EX01's hub handler: commit the message for real, then misbehave."""
    node = lab.daemon.nodes["EX01"]
    real = node.handlers[Role.HUB]
    committed: list[Reply] = []

    async def handler(message: AcceptedMessage) -> Reply:
        reply = await real(message)
        committed.append(reply)
        if after_commit == "drop":  # the hub goes away before its reply goes out
            for session in list(node.sessions):
                connector = session.core.connector
                if connector is not None and connector.transport_role is Role.HUB:
                    session.close_transport()
        else:  # the hub stops answering
            await release.wait()
        return reply

    node.handlers[Role.HUB] = handler
    return committed


@pytest.mark.parametrize("after_commit", ["drop", "silent"])
async def test_a_hub_lost_after_the_data_gets_no_second_commit(
    lab: RunningLab, monkeypatch: pytest.MonkeyPatch, after_commit: str,
) -> None:
    if after_commit == "silent":  # the Front End waits 30 s for a hub reply; 0.5 s here
        monkeypatch.setattr(lab.daemon.nodes["EX01"].frontend, "hop_timeout", 0.5)
    release = asyncio.Event()
    committed = _hub_commits_then(lab, after_commit, release)
    try:
        reply = await _send_raw(lab, "Message-ID: <once@fabrikam.example>\r\n"
                                     "Subject: once\r\n\r\nbody\r\n")
        assert reply == PRX4  # the outcome is unknown to the Front End: a 4xx, not a replay
        assert len(committed) == 1
    finally:
        release.set()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    await _drained(lab)
    await asyncio.sleep(0.3)
    assert len(committed) == 1
    assert len(lab.mailbox("alice@contoso.com")) == 1


async def test_a_hub_down_before_the_data_is_still_retried_on_a_new_hop(lab: RunningLab) -> None:
    # The first message opens the client session's hop; the hub then drops it while idle.
    # The next message finds the hop dead at MAIL, before any data: one retry, one copy.
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    node = lab.daemon.nodes["EX01"]
    for n in range(2):
        await client.cmd("MAIL FROM:<x@fabrikam.example>")
        await client.cmd("RCPT TO:<alice@contoso.com>")
        await client.cmd("DATA")
        reply = await client.cmd(f"Message-ID: <hop-{n}@fabrikam.example>\r\n\r\nbody\r\n.")
        assert reply.startswith("250 2.6.0 <hop-"), reply
        for session in list(node.sessions):
            connector = session.core.connector
            if connector is not None and connector.transport_role is Role.HUB:
                session.close_transport()
        await asyncio.sleep(0.1)
    client.close()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 2)
    await _drained(lab)


def _send_smtplib(port: int, rcpts: list[str], data: str) -> dict[str, object]:
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
        client.ehlo()
        return client.sendmail("x@fabrikam.example", rcpts, data)  # type: ignore[return-value]


async def test_the_same_message_sent_twice_lands_once_per_mailbox(lab: RunningLab) -> None:
    # A client retrying after an ambiguous 4xx sends the same message (same Message-ID) again:
    # it is accepted (a second queue entry) and dropped at mailbox delivery.
    rcpts = ["alice@contoso.com", "bob@contoso.com"]
    same = "Message-ID: <twice@fabrikam.example>\r\nSubject: twice\r\n\r\nbody\r\n"
    for _ in range(2):
        assert await asyncio.to_thread(_send_smtplib, lab.port(25), rcpts, same) == {}
    other = "Message-ID: <other@fabrikam.example>\r\nSubject: other\r\n\r\nbody\r\n"
    assert await asyncio.to_thread(_send_smtplib, lab.port(25), ["alice@contoso.com"],
                                   other) == {}
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 2
                       and len(lab.mailbox("bob@contoso.com")) == 1)
    await _drained(lab)
    await asyncio.sleep(0.3)
    alice = lab.mailbox("alice@contoso.com")
    assert len(alice) == 2 and len(lab.mailbox("bob@contoso.com")) == 1
    assert sum(b"<twice@fabrikam.example>" in m for m in alice) == 1
    # Both sends were the client's own: each was queued and each completed.
    assert await lab.daemon.queues["EX01"].pending_count() == 0
