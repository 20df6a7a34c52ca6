"""The message tracking log's files, limits and search (exchange.md §6.2, §9.8)."""

from __future__ import annotations

import datetime
from pathlib import Path

from exchsim.config.load import load_config
from exchsim.logs.tracking import (
    MAX_AGE,
    MAX_DIRECTORY_SIZE,
    MAX_FILE_SIZE,
    TRACKING_FIELDS,
    MessageTracking,
    TrackingLog,
)
from exchsim.logs.trackingsearch import Query, format_list, format_table, read_file, search
from exchsim.transport.queue import QueuedMessage

ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2024, 3, 13, 9, 1, 18, 723000, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


def _item(n: int, subject: str = "hello, world") -> QueuedMessage:
    data = (f"Subject: {subject}\r\nMessage-ID: <m{n}@fabrikam.example>\r\n"
            "X-MS-Exchange-Organization-Network-Message-Id: 11111111-2222-3333-4444-08dc00000000"
            "\r\nX-MS-Exchange-Organization-AuthAs: Anonymous\r\n\r\nbody\r\n").encode()
    return QueuedMessage(internal_id=n, message_id=f"<m{n}@fabrikam.example>",
                         sender="someone@fabrikam.example",
                         recipients=("alice@contoso.com", "bob@contoso.com"), data=data,
                         received_at=datetime.datetime(2024, 3, 13, tzinfo=datetime.UTC),
                         attempts=0, metadata={}, next_attempt_at=None)


def _tracking(tmp_path: Path, clock: FakeClock, **limits: object) -> MessageTracking:
    lab = load_config(ROOT / "configs" / "single-server.yaml")
    return MessageTracking.open(lab.servers[0], tmp_path, clock, **limits)  # type: ignore[arg-type]


def test_defaults_are_set_transportservices() -> None:
    assert MAX_FILE_SIZE == 10 * 1024 * 1024
    assert MAX_DIRECTORY_SIZE == 1000 * 1024 * 1024
    assert datetime.timedelta(days=30) == MAX_AGE
    lab = load_config(ROOT / "configs" / "single-server.yaml")
    server = lab.servers[0]
    assert server.message_tracking_log_enabled
    assert server.message_tracking_log_max_file_size == MAX_FILE_SIZE
    assert server.message_tracking_log_max_directory_size == MAX_DIRECTORY_SIZE
    assert server.message_tracking_log_max_age == MAX_AGE
    assert server.message_tracking_log_subject_logging_enabled


def test_events_read_back_with_their_own_fields_line(tmp_path: Path) -> None:
    clock = FakeClock()
    tracking = _tracking(tmp_path, clock)
    item = _item(1)
    tracking.defer(item, {"alice@contoso.com": "451 4.4.0 down, really"})
    clock.now += datetime.timedelta(seconds=1)
    tracking.fail(item, {"bob@contoso.com": "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"})
    tracking.poison(item, "ValueError: boom")
    tracking.close()
    [name] = [p.name for p in tmp_path.iterdir()]
    assert name == "MSGTRK2024031309-1.LOG"
    lines = (tmp_path / name).read_bytes().decode().split("\r\n")
    assert lines[:5] == [
        "#Software: Microsoft Exchange Server", "#Version: 15.02.1748.010",
        "#Log-type: Message Tracking Log", "#Date: 2024-03-13T09:01:18.723Z",
        f"#Fields: {TRACKING_FIELDS}"]
    assert len(TRACKING_FIELDS.split(",")) == 30
    entries = list(read_file(tmp_path / name, "EX01"))
    assert [e.get("event-id") for e in entries] == ["DEFER", "FAIL", "POISONMESSAGE"]
    defer, fail, poison = entries
    assert defer.get("recipient-status") == "451 4.4.0 down, really"  # quoted: a comma
    assert defer.get("message-subject") == "hello, world"
    assert defer.get("network-message-id") == "11111111-2222-3333-4444-08dc00000000"
    assert defer.get("directionality") == "Incoming"
    assert fail.get("source") == "ROUTING" and fail.get("recipient-address") == "bob@contoso.com"
    assert poison.get("source") == "POISONMESSAGE" and poison.get("custom-data").startswith(
        "ValueError")
    assert poison.get("recipient-address") == "alice@contoso.com;bob@contoso.com"
    assert poison.get("recipient-count") == "2"
    assert defer.get("date-time") == "2024-03-13T09:01:18.723Z"


def test_subjects_can_be_left_out(tmp_path: Path) -> None:
    clock = FakeClock()
    tracking = _tracking(tmp_path, clock, subjects=False)
    tracking.defer(_item(1), {"alice@contoso.com": "451 4.4.0 down"})
    tracking.close()
    [entry] = read_file(next(tmp_path.iterdir()), "EX01")
    assert entry.get("message-subject") == ""


def test_size_rotation_and_the_directory_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    log = TrackingLog(tmp_path, "MSGTRK", clock, "15.02.1748.010", max_file_size=2000,
                      max_directory_size=6000)
    other = tmp_path / "MSGTRKMD2024031309-1.LOG"  # another kind: never counted or deleted
    other.write_text("#x\r\n" * 2000)
    for n in range(60):
        log.write([f"{n:03d}" + "x" * 200] + [""] * 28)
        clock.now += datetime.timedelta(seconds=1)
    log.close()
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir() if p != other}
    assert all(size <= 2000 for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 6000, sizes
    assert len(sizes) >= 2 and other.exists()
    newest = max(sizes, key=lambda name: int(name.split("-")[1].split(".")[0]))
    assert newest != "MSGTRK2024031309-1.LOG"
    assert (tmp_path / newest).read_text().rstrip().splitlines()[-1].split(",")[1].startswith(
        "059")


def test_age_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    for name in ("MSGTRK2024031007-1.LOG", "MSGTRK2024031208-1.LOG", "MSGTRKMD2024031007-1.LOG"):
        (tmp_path / name).write_text("#old\r\n")
    TrackingLog(tmp_path, "MSGTRK", clock, "15.02.1748.010",
                max_age=datetime.timedelta(days=2)).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "MSGTRK2024031208-1.LOG", "MSGTRKMD2024031007-1.LOG"]


def test_search_filters_like_the_cmdlet_and_prints_its_table(tmp_path: Path) -> None:
    clock = FakeClock()
    logs = tmp_path / "logs"
    tracking = _tracking(logs / "EX01" / "MessageTracking", clock)
    for n in range(3):
        tracking.defer(_item(n, f"subject {n}"), {"alice@contoso.com": "451 4.4.0 down"})
        clock.now += datetime.timedelta(minutes=10)
    tracking.fail(_item(9), {"bob@contoso.com": "550 5.1.1 nope"})
    tracking.close()
    everything = search(logs, ["EX01", "EX02"], Query())
    assert len(everything) == 4
    assert [e.get("message-id") for e in search(logs, ["EX01"], Query(message_id="m1@fabrikam.example"))] == [
        "<m1@fabrikam.example>"]
    assert len(search(logs, ["EX01"], Query(event_id="fail"))) == 1
    assert len(search(logs, ["EX01"], Query(recipients=("BOB@contoso.com",)))) == 1
    assert len(search(logs, ["EX01"], Query(sender="Someone@Fabrikam.example"))) == 4
    start = datetime.datetime(2024, 3, 13, 9, 11, 18, 723000, tzinfo=datetime.UTC)
    assert [e.get("message-subject") for e in search(logs, ["EX01"], Query(
        start=start, end=start + datetime.timedelta(minutes=10)))] == ["subject 1"]
    table = format_table(everything).splitlines()
    assert table[0].split() == ["Timestamp", "EventId", "Source", "Sender", "Recipients",
                                "MessageSubject"]
    assert table[2].split()[:4] == ["2024-03-13", "09:01:18", "DEFER", "SMTP"]
    assert "{alice@contoso.com}" in table[2]
    listing = format_list(everything[:1])
    assert "MessageId               : <m0@fabrikam.example>" in listing
    assert "SchemaVersion           : 15.02.1748.010" in listing


def test_a_log_that_cannot_be_written_does_not_raise(tmp_path: Path) -> None:
    import shutil

    clock = FakeClock()
    directory = tmp_path / "MessageTracking"
    tracking = _tracking(directory, clock)
    tracking.defer(_item(1), {"alice@contoso.com": "451 4.4.0 down"})
    tracking.close()
    shutil.rmtree(directory)
    directory.write_text("a file where the directory should be")
    clock.now += datetime.timedelta(hours=1)  # the next line opens a new file, and cannot
    tracking.defer(_item(2), {"alice@contoso.com": "451 4.4.0 down"})  # no exception
    tracking.close()
