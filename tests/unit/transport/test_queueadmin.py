"""The retry schedule in the delivery agent with an injected clock, the queue views built from
the file and the agent's memory, and the control channel's answers (exchange.md §8.5)."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exchsim.config.load import load_config_text
from exchsim.config.model import Lab
from exchsim.policy.nexthop import DeliveryType, NextHop
from exchsim.policy.retry import RetrySchedule
from exchsim.transport.delivery import DeliveryAgent, Endpoint
from exchsim.transport.hub import Route, categorize
from exchsim.transport.queue import MessageQueue
from exchsim.transport.queueadmin import AdminError, QueueAdmin, offline_views, parse_identity
from exchsim.transport.queuecontrol import ControlServer, control_path, control_paths
from exchsim.transport.queuestate import NO_MATCHING_CONNECTOR, database_name, next_hop_of
from tests.integration.conftest import LAB_YAML

T0 = datetime.datetime(2026, 11, 29, 8, 0, tzinfo=datetime.UTC)
MINUTE = datetime.timedelta(minutes=1)


@dataclass
class FakeClock:
    now: datetime.datetime = T0
    ticks: list[float] = field(default_factory=list)

    def utc(self) -> datetime.datetime:
        return self.now

    def local(self, zone: datetime.tzinfo | None = None) -> datetime.datetime:
        return self.now

    def monotonic(self) -> float:
        return 0.0


def lab() -> Lab:
    return load_config_text(LAB_YAML, "lab.yaml")


def agent_for(queue: MessageQueue, clock: FakeClock) -> DeliveryAgent:
    config = lab()
    schedule = RetrySchedule(transient_failure_retry_count=2,
                             transient_failure_retry_interval=MINUTE,
                             outbound_connection_failure_retry_interval=10 * MINUTE,
                             message_retry_interval=15 * MINUTE)
    # No internal transport certificate: every hop to Mailbox Delivery is Unreachable at once.
    return DeliveryAgent(config, config.server("EX01"), clock, queue,  # type: ignore[arg-type]
                         lambda: None, mailbox_delivery={"ex01": Endpoint("127.0.0.1", 9)},
                         internet=Endpoint("127.0.0.1", 9), retry=MINUTE, schedule=schedule)


async def put(queue: MessageQueue, subject: str, *rcpts: str) -> int:
    item = await queue.enqueue(message_id=f"<{subject}@fabrikam.example>",
                               sender="carol@fabrikam.example",
                               recipients=list(rcpts or ["alice@contoso.com"]),
                               data=f"Subject: {subject}\r\n\r\nbody\r\n".encode(),
                               metadata={"source": "SMTP:Default Frontend EX01"}, now=T0)
    return item.internal_id


def test_next_hops_of_the_agents_destinations() -> None:
    config = lab()
    assert next_hop_of(config, categorize(config, "alice@contoso.com"),
                       "alice@contoso.com") == NextHop(
        DeliveryType.SMTP_DELIVERY_TO_MAILBOX, database_name("EX01").lower())
    assert database_name("EX01") == database_name("ex01")
    assert database_name("EX01").startswith("Mailbox Database ")
    assert len(database_name("EX01").rsplit(" ", 1)[1]) == 10
    # lab.yaml's send connector To Internet, with the internet sink as its smart host.
    assert next_hop_of(config, categorize(config, "u@Fabrikam.Example"),
                       "u@Fabrikam.Example") == NextHop(
        DeliveryType.SMART_HOST_CONNECTOR_DELIVERY, "[127.0.10.250]", "To Internet")
    assert next_hop_of(config, Route("ndr"), "nobody@contoso.com") is None


def test_message_identities() -> None:
    assert parse_identity("EX01\\3\\1234") == ("EX01", "3", 1234)
    assert parse_identity("Poison\\12") == (None, "Poison", 12)
    assert parse_identity(" 99 ") == (None, None, 99)
    for bad in ("", "EX01\\3\\x", "a\\b\\c\\1", "EX01\\3\\"):
        with pytest.raises(AdminError):
            parse_identity(bad)


async def test_the_connection_clock_then_the_views(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = await MessageQueue.open(tmp_path / "EX01.sqlite")
    try:
        agent = agent_for(queue, clock)
        admin = QueueAdmin(agent.lab, agent.server, queue, agent)
        internal_id = await put(queue, "stuck")
        # Not attempted yet: in Submission.
        queues = await admin.get_queues()
        assert [(q["Identity"], q["MessageCount"]) for q in queues] == [("EX01\\Submission", 1)]
        retries = []
        for _ in range(4):
            item = await queue.get(internal_id)
            assert item is not None
            await agent._attempt(item)
            item = await queue.get(internal_id)
            assert item is not None
            retries.append(item.next_attempt_at - clock.now)
            clock.now = item.next_attempt_at
        # TransientFailureRetryCount (2) retries a minute apart, then the long interval.
        assert retries == [MINUTE, MINUTE, 10 * MINUTE, 10 * MINUTE]
        failure = agent.state.down["mailbox EX01"]
        assert failure.failures == 4 and failure.reason == "no internal transport certificate"

        # While the destination is known to be down, an attempt does not count a failure.
        held = await queue.get(internal_id)
        assert held is not None
        clock.now -= MINUTE
        await agent._attempt(held)
        assert agent.state.down["mailbox EX01"].failures == 4

        queues = {q["Identity"]: q for q in await admin.get_queues()}
        hop = queues["EX01\\3"]
        assert hop["DeliveryType"] == "SmtpDeliveryToMailbox"
        assert hop["Status"] == "Retry" and hop["MessageCount"] == 1
        assert hop["NextHopDomain"] == database_name("EX01").lower()
        assert hop["LastError"] == "no internal transport certificate"
        assert hop["RetryCount"] == 4 and hop["NextRetryTime"]
        messages = await admin.get_messages("3")
        assert [(m["Identity"], m["Status"], m["Subject"], m["FromAddress"])
                for m in messages] == [(f"EX01\\3\\{internal_id}", "Retry", "stuck",
                                        "carol@fabrikam.example")]
        assert messages[0]["MessageSourceName"] == "SMTP:Default Frontend EX01"
        assert messages[0]["Recipients"] == ["alice@contoso.com"]
        assert messages[0]["RetryCount"] == 5

        # Suspended: out of the due scan; the view says so; resumed: due now.
        await admin.suspend(f"EX01\\3\\{internal_id}")
        clock.now += 60 * MINUTE
        assert await queue.due(clock.now) == []
        assert [m["Status"] for m in await admin.get_messages()] == ["Suspended"]
        with pytest.raises(AdminError, match="Unreachable"):
            await admin.retry("Unreachable", resubmit=False)
        with pytest.raises(AdminError, match="no queue"):
            await admin.retry("EX01\\42", resubmit=False)
        await admin.resume(str(internal_id))
        assert [m.internal_id for m in await queue.due(clock.now)] == [internal_id]
    finally:
        await queue.close()

    # The lab stopped: the same views from the file alone, read-only.
    queues, messages = offline_views(lab(), lab().server("EX01"), tmp_path / "EX01.sqlite",
                                     clock.now - 100 * MINUTE)
    assert [(q["Identity"], q["Status"]) for q in queues] == [
        ("EX01\\3", "Retry"), ("EX01\\Submission", "Ready")]
    assert queues[0]["LastError"] == "no internal transport certificate"
    assert [m["Status"] for m in messages] == ["Retry"]


async def test_the_control_channel_answers_every_request(tmp_path: Path) -> None:
    queue = await MessageQueue.open(tmp_path / "EX01.sqlite")
    try:
        agent = agent_for(queue, FakeClock())
        server = ControlServer(tmp_path / "control.sock",
                               {"EX01": QueueAdmin(agent.lab, agent.server, queue, agent)})
        ok = await server.answer(json.dumps({"command": "get-queue", "server": "EX01"}).encode())
        assert ok["ok"] is True and ok["result"][0]["Identity"] == "EX01\\Submission"
        for line, error in ((b"\xff\xfe", "not JSON"), (b"null", "JSON object"),
                            (b'{"command": 1, "server": "EX01"}', "unknown command"),
                            (b'{"command": "get-queue"}', "no server"),
                            (b'{"command": "resume-message", "server": "EX01"}',
                             "bad arguments"),
                            (b'{"command": "remove-message", "server": "EX01", '
                             b'"identity": "EX01\\\\3\\\\7"}', "no message 7")):
            answer = await server.answer(line)
            assert answer["ok"] is False and error in answer["error"], (line, answer)
    finally:
        await queue.close()


async def test_a_recipient_routed_to_no_connector_is_in_the_unreachable_queue(
        tmp_path: Path) -> None:
    clock = FakeClock()
    queue = await MessageQueue.open(tmp_path / "EX01.sqlite")
    try:
        agent = agent_for(queue, clock)
        admin = QueueAdmin(agent.lab, agent.server, queue, agent)
        internal_id = await put(queue, "nowhere", "user@fabrikam.example", "alice@contoso.com")
        # What routing through send connectors records when none matches (send10's seam).
        await queue.defer(internal_id, ["user@fabrikam.example"], next_attempt_at=T0 + MINUTE,
                          reason=NO_MATCHING_CONNECTOR)
        agent.state.route(internal_id, {
            "user@fabrikam.example": (NextHop(DeliveryType.UNREACHABLE, "unreachable domain"),
                                      "unreachable"),
            "alice@contoso.com": (categorize(agent.lab, "alice@contoso.com").next_hop,
                                  "mailbox EX01")})
        queues = {q["Identity"]: q for q in await admin.get_queues()}
        assert queues["EX01\\Unreachable"]["DeliveryType"] == "Unreachable"
        assert queues["EX01\\Unreachable"]["NextHopDomain"] == "Unreachable Domain"
        assert queues["EX01\\Unreachable"]["MessageCount"] == 1
        messages = {m["Queue"]: m for m in await admin.get_messages()}
        assert messages["EX01\\Unreachable"]["Recipients"] == ["user@fabrikam.example"]
        assert messages["EX01\\Unreachable"]["LastError"] == NO_MATCHING_CONNECTOR
        assert messages["EX01\\Unreachable"]["Status"] == "Retry"
        # Both copies of the message carry the same integer, in their own queues.
        assert {m["Identity"].rsplit("\\", 1)[1] for m in messages.values()} == {
            str(internal_id)}
        with pytest.raises(AdminError, match="--resubmit"):
            await admin.retry("EX01\\Unreachable", resubmit=False)
        assert "1 message(s)" in await admin.retry("Unreachable", resubmit=True)
        assert internal_id not in agent.state.routed  # routed again at the next attempt
        assert [m.internal_id for m in await queue.due(T0)] == [internal_id]
    finally:
        await queue.close()


def test_a_lab_and_a_single_server_have_their_own_sockets(tmp_path: Path) -> None:
    assert control_path(tmp_path) == tmp_path / "queue" / "control.sock"
    assert control_path(tmp_path, "ex02") == tmp_path / "queue" / "EX02.sock"
    assert control_paths(tmp_path, "EX02") == [tmp_path / "queue" / "EX02.sock",
                                               tmp_path / "queue" / "control.sock"]


async def test_the_poison_queue_is_shown_and_resumed_from(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = await MessageQueue.open(tmp_path / "EX01.sqlite")
    try:
        agent = agent_for(queue, clock)
        admin = QueueAdmin(agent.lab, agent.server, queue, agent)
        internal_id = await put(queue, "poisoned")
        for _ in range(2):
            await queue.record_crash(internal_id, reason="RuntimeError: x", now=T0, retry_at=T0)
        queues = {q["Identity"]: q for q in await admin.get_queues()}
        assert queues["EX01\\Poison"]["NextHopDomain"] == "Poison Message"
        assert queues["EX01\\Poison"]["MessageCount"] == 1
        [message] = await admin.get_messages("EX01\\Poison")
        assert message["Status"] == "Suspended"  # every poison message is suspended
        with pytest.raises(AdminError, match="Poison queue"):
            await admin.suspend(message["Identity"])
        with pytest.raises(AdminError, match="one by one"):
            await admin.retry("Poison", resubmit=False)
        await admin.resume(message["Identity"])
        assert await queue.poison_count() == 0
        assert [m.internal_id for m in await queue.due(T0)] == [internal_id]
        assert "EX01\\Poison" not in {q["Identity"] for q in await admin.get_queues()}
    finally:
        await queue.close()


@pytest.mark.parametrize(("headers", "subject"), [
    (b"From: a\r\nSubject: hello\r\n  world\r\nTo: b\r\n\r\nSubject: body", "hello world"),
    (b"subject: =?utf-8?q?caf=C3=A9?= au lait\r\n\r\n", "caf\u00e9 au lait"),
    (b"X-Subject: not this\r\n\r\n", ""),
    (b"Subject: =?bogus?q?x?=\r\n\r\n", "=?bogus?q?x?="),
])
def test_the_subject_a_view_shows(headers: bytes, subject: str) -> None:
    from exchsim.transport.queueadmin import _subject
    assert _subject(headers) == subject
