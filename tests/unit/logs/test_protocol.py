"""The SMTP protocol log in Exchange's CSV format (exchange.md §6.1)."""

from __future__ import annotations

import datetime
from pathlib import Path

from exchsim.config.syntax import format_endpoint
from exchsim.logs.protocol import (
    ProtocolLog,
    flatten_reply,
    new_session_id,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2024, 3, 13, 9, 1, 18, 723000, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


def read(directory: Path) -> dict[str, list[str]]:
    return {p.name: p.read_bytes().decode().split("\r\n")[:-1]
            for p in sorted(directory.iterdir())}


def test_header_and_lines(tmp_path: Path) -> None:
    clock = FakeClock()
    log = ProtocolLog(tmp_path, "SmtpReceive", clock)
    s = log.session("EX01\\Default Frontend EX01", "08DC42C8FF236A1F", "127.0.10.1:25",
                    "127.0.0.1:62136")
    s.connect()
    s.sent("220 ex01 Microsoft ESMTP MAIL Service ready at Wed, 13 Mar 2024 10:01:17 +0100")
    s.received("EHLO client")
    s.sent("250-ex01 Hello [127.0.0.1]\r\n250-SIZE 37748736\r\n250 XRDST")
    s.info("08DC42C8FF236A1F;2024-03-13T09:01:18.723Z;1", "receiving message")
    s.received_redacted()
    s.disconnect("Remote")
    log.close()
    files = read(tmp_path)
    assert list(files) == ["RECV2024031309-1.LOG"]
    lines = files["RECV2024031309-1.LOG"]
    assert lines[:5] == [
        "#Software: Microsoft Exchange Server",
        "#Version: 15.0.0.0",
        "#Log-type: SMTP Receive Protocol Log",
        "#Date: 2024-03-13T09:01:18.723Z",
        "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,"
        "remote-endpoint,event,data,context",
    ]
    prefix = "2024-03-13T09:01:18.723Z,EX01\\Default Frontend EX01,08DC42C8FF236A1F,"
    assert lines[5] == prefix + "0,127.0.10.1:25,127.0.0.1:62136,+,,"
    assert lines[6] == (prefix + '1,127.0.10.1:25,127.0.0.1:62136,>,"220 ex01 Microsoft ESMTP '
                        'MAIL Service ready at Wed, 13 Mar 2024 10:01:17 +0100",')
    assert lines[8].endswith(">,250  ex01 Hello [127.0.0.1] SIZE 37748736 XRDST,")
    assert lines[9].endswith("*,08DC42C8FF236A1F;2024-03-13T09:01:18.723Z;1,receiving message")
    assert lines[10].endswith("<,<authentication information>,")
    assert lines[11].endswith(",6,127.0.10.1:25,127.0.0.1:62136,-,,Remote")


def test_interleaved_sessions_number_their_own_lines(tmp_path: Path) -> None:
    log = ProtocolLog(tmp_path, "SmtpSend", FakeClock())
    a = log.session("A", "1", "l:1", "r:1")
    b = log.session("B", "2", "l:2", "r:2")
    a.connect()
    b.connect()
    a.received('say "hi"')
    b.disconnect()
    log.close()
    lines = read(tmp_path)["SEND2024031309-1.LOG"][5:]
    assert [line.split(",")[3] for line in lines] == ["0", "0", "1", "1"]
    assert lines[2].endswith(',<,"say ""hi""",')


def test_hourly_and_size_rotation(tmp_path: Path) -> None:
    clock = FakeClock()
    log = ProtocolLog(tmp_path, "SmtpReceive", clock, max_file_size=400)
    s = log.session("A", "1", "l:1", "r:1")
    for _ in range(5):
        s.received("x" * 100)
    clock.now += datetime.timedelta(hours=1)
    s.received("next hour")
    log.close()
    names = list(read(tmp_path))
    assert "RECV2024031309-1.LOG" in names and "RECV2024031309-2.LOG" in names
    assert names[-1] == "RECV2024031310-1.LOG"


def test_helpers() -> None:
    assert format_endpoint("::1", 25) == "[::1]:25"
    assert format_endpoint("127.0.0.1", 25) == "127.0.0.1:25"
    assert flatten_reply("250 2.0.0 OK") == "250 2.0.0 OK"
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    ids = {new_session_id(n, start) for n in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 16 and i == i.upper() for i in ids)


async def test_inside_a_loop_lines_are_written_together_at_the_end_of_the_iteration(
        tmp_path: Path) -> None:
    import asyncio

    clock = FakeClock()
    log = ProtocolLog(tmp_path, "SmtpReceive", clock)
    a = log.session("EX01\\A", "1", "127.0.10.1:25", "127.0.0.1:1")
    b = log.session("EX01\\B", "2", "127.0.10.1:25", "127.0.0.1:2")
    a.connect()
    clock.now += datetime.timedelta(milliseconds=5)
    b.connect()
    clock.now += datetime.timedelta(seconds=1, milliseconds=2)
    a.received("EHLO x")
    [name] = read(tmp_path)
    assert len(read(tmp_path)[name]) == 5  # only the header so far
    await asyncio.sleep(0)
    lines = read(tmp_path)[name][5:]
    assert [line.split(",")[0] for line in lines] == [
        "2024-03-13T09:01:18.723Z", "2024-03-13T09:01:18.728Z", "2024-03-13T09:01:19.730Z"]
    assert lines[2].endswith("<,EHLO x,")
    # An hour change writes what is pending into the old file before opening the new one.
    b.received("QUIT")
    clock.now += datetime.timedelta(hours=1)
    b.disconnect()
    log.close()
    files = read(tmp_path)
    assert [len(v) for v in files.values()] == [9, 6]
    assert files[name][-1].endswith("<,QUIT,")
