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


def test_the_connect_line_can_carry_the_sessions_start(tmp_path: Path) -> None:
    # The `+` line's time is the session start the `receiving message` data repeats
    # (exchange.md §12.7): the caller passes the moment it read.
    clock = FakeClock()
    log = ProtocolLog(tmp_path, "SmtpReceive", clock)
    s = log.session("A", "1", "l:1", "r:1")
    started = clock.now - datetime.timedelta(milliseconds=2)
    s.connect(started)
    s.disconnect()
    log.close()
    [lines] = read(tmp_path).values()
    assert lines[5].startswith("2024-03-13T09:01:18.721Z,A,1,0,l:1,r:1,+,,")
    assert lines[6].startswith("2024-03-13T09:01:18.723Z,A,1,1,l:1,r:1,-,,")


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


def test_past_the_file_size_it_rolls_and_past_the_directory_size_the_oldest_go(
        tmp_path: Path) -> None:
    clock = FakeClock()
    log = ProtocolLog(tmp_path, "SmtpReceive", clock, max_file_size=1000,
                      max_directory_size=3000)
    s = log.session("EX01\\A", "1", "l:1", "r:1")
    for n in range(60):  # 60 lines of 118 bytes: five a file after the header, 12 files
        s.received(f"{n:03d}" + "x" * 80)
        clock.now += datetime.timedelta(seconds=1)
    log.close()
    files = read(tmp_path)
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    assert sum(sizes.values()) <= 3000, sizes
    assert all(size <= 1000 for size in sizes.values()), sizes
    # the newest and the two before it: with room for the newest to grow to 1,000 bytes
    names = sorted(files, key=lambda name: int(name.split("-")[1].split(".")[0]))
    assert names == [f"RECV2024031309-{n}.LOG" for n in (10, 11, 12)], sizes
    assert files[names[-1]][-1].split(",")[7].startswith("059"), files  # the newest kept


def test_files_past_the_age_limit_are_deleted_at_start_and_on_roll(tmp_path: Path) -> None:
    clock = FakeClock()  # 2024-03-13 09:01 UTC
    other = tmp_path / "notes.txt"
    other.write_text("not a log")
    send = tmp_path / "SEND2024030101-1.LOG"
    send.write_text("another kind")
    for name in ("RECV2024031107-1.LOG", "RECV2024031108-1.LOG", "RECV2024031108-2.LOG",
                 "RECV2024031209-1.LOG"):
        (tmp_path / name).write_text("#old\r\n")
    log = ProtocolLog(tmp_path, "SmtpReceive", clock, max_age=datetime.timedelta(days=2))
    # 2024-03-11 08:00-09:00 ended 2 days and 0 h 01 min ago: past the age; 07:00 too
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "RECV2024031209-1.LOG", "SEND2024030101-1.LOG", "notes.txt"]
    s = log.session("EX01\\A", "1", "l:1", "r:1")
    s.connect()
    clock.now += datetime.timedelta(days=1, hours=1, minutes=30)  # a new hour's file: a roll
    s.received("later")  # 2024-03-12 09:00-10:00 ended 2 days and 0 h 31 min ago
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "RECV2024031309-1.LOG", "RECV2024031410-1.LOG", "SEND2024030101-1.LOG", "notes.txt"]


def test_unlimited_and_zero_age_delete_nothing(tmp_path: Path) -> None:
    for name in ("RECV2001010100-1.LOG", "RECV2001010100-2.LOG"):
        (tmp_path / name).write_text("x" * 5000)
    log = ProtocolLog(tmp_path, "SmtpReceive", FakeClock(), max_file_size=None,
                      max_directory_size=None, max_age=datetime.timedelta(0))
    s = log.session("EX01\\A", "1", "l:1", "r:1")
    for _ in range(100):
        s.received("y" * 200)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "RECV2001010100-1.LOG", "RECV2001010100-2.LOG", "RECV2024031309-1.LOG"]
