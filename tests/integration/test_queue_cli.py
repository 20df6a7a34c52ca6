"""``exchsim queue`` on a running lab: a message stuck in Retry is shown with its reason,
retried, suspended, resumed and removed (with and without an NDR) through the daemon's control
socket, without a restart; the file is read when the lab is not running; bad input to the
socket never stops the daemon (exchange.md §8.5, transport/queuecontrol.py)."""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from exchsim.transport.queuecontrol import MAX_REQUEST, control_path
from tests.integration.conftest import FAST, FAST_LAB_YAML, RunningLab, start_lab, with_connectors

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
# Connection failures are retried after a minute here (set on the server, so not capped by
# Lab.RetryInterval): the message stays in Retry until the test retries the queue.
SLOW_RETRY = FAST_LAB_YAML.replace(
    'Address: 127.0.10.1, Version: "15.2"}',
    'Address: 127.0.10.1, Version: "15.2", TransientFailureRetryInterval: "00:01:00", '
    'MessageRetryInterval: "00:01:00"}')


async def exchsim_queue(running: RunningLab, config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "queue", "--config", str(config), "--data", str(running.data), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def queue_json(running: RunningLab, config: Path, *args: str) -> Any:
    code, out, err = await exchsim_queue(running, config, "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def send(running: RunningLab, rcpt: str, subject: str, sender: str = "carol@fabrikam.example",
         ) -> None:
    with smtplib.SMTP("127.0.10.1", running.port(25), timeout=10) as client:
        client.sendmail(sender, [rcpt], f"From: {sender}\r\nTo: {rcpt}\r\n"
                        f"Subject: {subject}\r\n\r\nbody\r\n".encode())


@pytest.fixture
async def slow_lab(tmp_path: Path) -> Any:
    text = with_connectors(SLOW_RETRY, FAST)
    config = tmp_path / "lab.yaml"
    config.write_text(text, encoding="utf-8")
    running = await start_lab(text, tmp_path / "data")
    try:
        yield running, config
    finally:
        await running.daemon.stop()


async def stuck(running: RunningLab, config: Path, subject: str) -> dict[str, Any]:
    """Send a message to alice while EX01's Mailbox Delivery is down: it sits in Retry."""
    await asyncio.to_thread(send, running, "alice@contoso.com", subject)
    for _ in range(200):
        found = [m for m in await queue_json(running, config, "messages")
                 if m["Subject"] == subject and m["Status"] == "Retry"]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the message never reached Retry")


async def test_a_stuck_message_is_shown_retried_suspended_resumed_and_removed(
        slow_lab: tuple[RunningLab, Path]) -> None:
    running, config = slow_lab
    await running.daemon.pause_listener("127.0.10.1", 475)  # EX01's Mailbox Delivery is down
    first = await stuck(running, config, "first")
    queue = first["Queue"]
    assert queue.startswith("EX01\\") and queue.split("\\")[1].isdigit()
    assert first["Identity"].startswith(queue + "\\")
    assert first["FromAddress"] == "carol@fabrikam.example"
    assert "127.0.10.1" in first["LastError"]  # why: the connection was refused

    # Get-Queue: the mailbox database's queue is in Retry with the reason; Submission is shown.
    queues = {q["Identity"]: q for q in await queue_json(running, config, "get")}
    assert queues[queue]["Status"] == "Retry"
    assert queues[queue]["DeliveryType"] == "SmtpDeliveryToMailbox"
    assert queues[queue]["NextHopDomain"].startswith("mailbox database ")
    assert queues[queue]["MessageCount"] == 1
    assert "127.0.10.1" in queues[queue]["LastError"] and queues[queue]["NextRetryTime"]
    assert queues["EX01\\Submission"]["DeliveryType"] == "Undefined"
    code, table, _ = await exchsim_queue(running, config, "get")
    assert code == 0
    assert table.splitlines()[0].split() == ["Identity", "DeliveryType", "Status",
                                             "MessageCount", "Velocity", "RiskLevel",
                                             "OutboundIPPool", "NextHopDomain"]
    assert any(line.split()[:3] == [queue, "SmtpDeliveryToMailbox", "Retry"]
               for line in table.splitlines())

    code, listing, err = await exchsim_queue(running, config, "--format", "list", "messages",
                                             "--queue", queue)
    assert code == 0, err
    assert f"Identity          : {first['Identity']}" in listing
    assert "LastError         : " in listing and "Subject           : first" in listing
    code, _, err = await exchsim_queue(running, config, "--server", "EX99", "get")
    assert code == 2 and "no server named 'EX99'" in err

    # Suspended: not delivered even when the destination is back and the queue retried.
    code, out, err = await exchsim_queue(running, config, "suspend", first["Identity"])
    assert code == 0, err
    second = await stuck(running, config, "second")
    await running.daemon.resume_listener("127.0.10.1", 475)
    code, out, err = await exchsim_queue(running, config, "retry", queue)
    assert code == 0 and "retried" in out, err
    await running.wait_for(lambda: len(running.mailbox("alice@contoso.com")) == 1)
    assert b"Subject: second" in running.mailbox("alice@contoso.com")[0]
    await asyncio.sleep(0.5)
    messages = await queue_json(running, config, "messages")
    assert [(m["Subject"], m["Status"]) for m in messages] == [("first", "Suspended")]
    assert second["Identity"] not in {m["Identity"] for m in messages}

    # Resumed: delivered at once.
    code, out, err = await exchsim_queue(running, config, "resume", messages[0]["Identity"])
    assert code == 0, err
    await running.wait_for(lambda: len(running.mailbox("alice@contoso.com")) == 2)
    assert await queue_json(running, config, "messages") == []


async def test_remove_deletes_a_message_with_or_without_an_ndr(
        slow_lab: tuple[RunningLab, Path]) -> None:
    running, config = slow_lab
    await running.daemon.pause_listener("127.0.10.1", 475)
    quiet = await stuck(running, config, "quiet")
    code, out, err = await exchsim_queue(running, config, "remove", quiet["Identity"])
    assert code == 0 and "without an NDR" in out, err
    loud = await stuck(running, config, "loud")
    code, out, err = await exchsim_queue(running, config, "remove", loud["Identity"], "--ndr")
    assert code == 0 and "with an NDR" in out, err
    # The NDR goes to the sender (at the internet sink); the removed messages never arrive.
    await running.wait_for(lambda: len(running.internet("carol@fabrikam.example")) == 1)
    ndr = running.internet("carol@fabrikam.example")[0]
    assert b"Subject: Undeliverable: loud" in ndr
    assert b"4.3.2" in ndr and b"QUEUE.Admin" in ndr
    assert [m["Subject"] for m in await queue_json(running, config, "messages")] == []
    await running.daemon.resume_listener("127.0.10.1", 475)
    await asyncio.sleep(0.5)
    assert running.mailbox("alice@contoso.com") == []
    # The tracking log: FAIL with source ADMIN for each removal.
    code, out, err = await asyncio.create_subprocess_exec(
        *EXCHSIM, "tracking", "--config", str(config), "--data", str(running.data),
        "--event-id", "FAIL", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE), "", ""
    stdout, _ = await code.communicate()
    assert stdout.decode().count("ADMIN") == 2
    # A message that is not there is refused with a clear error.
    code, out, err = await exchsim_queue(running, config, "remove", "EX01\\3\\12345")
    assert code == 1 and "no message 12345" in err


async def test_bad_requests_get_an_error_and_the_daemon_keeps_serving(
        slow_lab: tuple[RunningLab, Path]) -> None:
    running, config = slow_lab
    path = control_path(running.data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async def raw(data: bytes, eof: bool = True) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        writer.write(data)
        if eof:
            writer.write_eof()
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), 15)
        writer.close()
        result: dict[str, Any] = json.loads(answer)
        return result

    for data, expected in ((b"garbage\n", "not JSON"), (b"[1, 2]\n", "JSON object"),
                           (b'{"command": "format-disk", "server": "EX01"}\n', "unknown command"),
                           (b'{"command": "get-queue", "server": "EX99"}\n', "no server"),
                           (b'{"command": "suspend-message", "server": "EX01", "identity": 5}\n',
                            "bad arguments"),
                           (b"no newline", "one line"),
                           (b"x" * (MAX_REQUEST + 10) + b"\n", "larger than")):
        answer = await raw(data)
        assert answer["ok"] is False and expected in answer["error"], (data[:40], answer)
    with socket.socket(socket.AF_UNIX) as sock:  # connect and go away
        sock.connect(os.fspath(path))
    answer = await raw(b'{"command": "get-queue", "server": "ex01"}\n')
    assert answer["ok"] is True
    assert [q["Identity"] for q in answer["result"]] == ["EX01\\Submission"]
    assert running.daemon.failure is None


async def test_the_queue_file_is_read_when_the_lab_is_not_running(
        slow_lab: tuple[RunningLab, Path]) -> None:
    running, config = slow_lab
    await running.daemon.pause_listener("127.0.10.1", 475)
    first = await stuck(running, config, "offline")
    await running.daemon.stop()
    code, out, err = await exchsim_queue(running, config, "messages")
    assert code == 0, err
    assert "the lab is not running" in out
    assert any(line.split()[:2] == [first["Identity"], "carol@fabrikam.example"] and
               "Retry" in line for line in out.splitlines())
    code, out, err = await exchsim_queue(running, config, "retry", first["Queue"])
    assert code == 1 and "needs the running lab" in err
