"""SMTP protocol log in Exchange's CSV format (exchange.md §6.1).

Files ``RECVyyyymmddHH-n.LOG`` (send side ``SENDyyyymmddHH-n.LOG``): hourly, as real 2013+
files are named, ``n`` counting up when a file passes ``max_file_size``. Each starts with the
five ``#`` header lines.

The log bounds itself as Exchange's does, with the limits of Set-TransportService
(``ReceiveProtocolLogMaxFileSize`` 10 MB, ``ReceiveProtocolLogMaxDirectorySize`` 250 MB,
``ReceiveProtocolLogMaxAge`` 30 days; exchange.md §6.1), given per server in the config: past
the file size the log rolls to the next ``-n`` file; when it opens a file (at its first line
after start, at each roll, each hour) it deletes the files of its own kind in its directory
that are older than the age limit, then the oldest ones until the directory is within the size
limit (at start too, when the log is created). ``None`` is Unlimited; an age of zero removes
nothing by age, as in Exchange. A file's
age is taken from its name (the end of its hour), not from the file system, so it does not
change when a file is copied and the clock the server is given decides. Room is kept for
the open file to grow to its size limit, so the directory never holds more than its limit. A
line that would take a file past its size limit starts the next file (unless the file holds
nothing but its header). The file being written is never deleted, and neither is anything in
the directory but ``RECV``/``SEND`` files of this form.

Lines end in CRLF (Exchange is a Windows product). Inside a running event loop, the lines of
one loop iteration are written together at its end (one write for many sessions' lines), so a
reader sees them as soon as the loop has run; outside a loop each
line is written at once. Nothing is fsynced: a log is not a message.

Multi-line replies are flattened into one data field like 2013+ logs do; exchsim writes the
2019 form with two spaces after the code (``250  host Hello [ip] SIZE ...``, see
exchange.md §1.2) rather than the one-space form of the sample in exchange.md §6.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal

Clock = Callable[[], datetime.datetime]
FIELDS = (
    "date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,"
    "event,data,context"
)
MAX_FILE_SIZE = 10 * 1024 * 1024
MAX_DIRECTORY_SIZE = 250 * 1024 * 1024
MAX_AGE = datetime.timedelta(days=30)
_NAME = re.compile(r"(?P<prefix>[A-Z]+?)(?P<hour>[0-9]{10})-(?P<n>[0-9]+)\.LOG")

def _end_of_hour(hour: str) -> datetime.datetime:
    """The end of the hour a file is named for (``2024031309`` → 10:00 UTC)."""
    start = datetime.datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=datetime.UTC)
    return start + datetime.timedelta(hours=1)


def _iso(when: datetime.datetime) -> str:
    w = when.astimezone(datetime.UTC)
    return (f"{w.year:04d}-{w.month:02d}-{w.day:02d}T{w.hour:02d}:{w.minute:02d}:"
            f"{w.second:02d}.{w.microsecond // 1000:03d}Z")


def csv_field(value: str) -> str:
    if "," in value or '"' in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def flatten_reply(line: str) -> str:
    parts = line.replace("\r\n", "\n").split("\n")
    if len(parts) == 1:
        return parts[0]
    code = parts[0][:3]
    return f"{code}  " + " ".join(p[4:] for p in parts)


def new_session_id(counter: int, start: datetime.datetime) -> str:
    """16 upper-case hex digits, unique per process: start time ticks plus a counter."""
    ticks = int(start.timestamp() * 10_000_000) & 0xFFFFFFFFFFFF0000
    return f"{(ticks + counter) & 0xFFFFFFFFFFFFFFFF:016X}"


class ProtocolLog:
    fields = FIELDS
    version = "15.0.0.0"

    def __init__(
        self,
        directory: Path,
        kind: Literal["SmtpReceive", "SmtpSend"],
        clock: Clock,
        max_file_size: int | None = MAX_FILE_SIZE,
        max_directory_size: int | None = MAX_DIRECTORY_SIZE,
        max_age: datetime.timedelta = MAX_AGE,
    ) -> None:
        self.directory = directory
        self.kind = kind
        self.clock = clock
        self.max_file_size = max_file_size
        self.max_directory_size = max_directory_size
        self.max_age = max_age
        self._file_limit = max_file_size if max_file_size is not None else float("inf")
        self._file: IO[str] | None = None
        self._hour = ""
        self._hour_end: datetime.datetime | None = None
        self._size = 0
        self._header_size = 0
        self._pending: list[str] = []
        self._flush_scheduled = False
        self._stamp_second: datetime.datetime | None = None
        self._stamp_prefix = ""
        self.prune(clock())  # at start, what an earlier run left past the limits

    @property
    def prefix(self) -> str:
        return "RECV" if self.kind == "SmtpReceive" else "SEND"

    @property
    def log_type(self) -> str:
        return "SMTP Receive Protocol Log" if self.kind == "SmtpReceive" else (
            "SMTP Send Protocol Log")

    def session(
        self, connector_id: str, session_id: str, local_endpoint: str, remote_endpoint: str
    ) -> ProtocolLogSession:
        return ProtocolLogSession(self, connector_id, session_id, local_endpoint, remote_endpoint)

    def _open(self, now: datetime.datetime, *, full: bool = False) -> IO[str]:
        utc = now.astimezone(datetime.UTC)
        hour = utc.strftime("%Y%m%d%H")
        if self._file is not None and hour == self._hour and not full:
            return self._file
        self.close()
        self._hour_end = utc.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(
            hours=1)
        self.directory.mkdir(parents=True, exist_ok=True)
        n = 1
        if hour == self._hour:
            n = self._n + 1
        path = self.directory / f"{self.prefix}{hour}-{n}.LOG"
        while path.exists() and path.stat().st_size >= self._file_limit:
            n += 1
            path = self.directory / f"{self.prefix}{hour}-{n}.LOG"
        fresh = not path.exists()
        handle = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._size = path.stat().st_size if not fresh else 0
        if fresh:
            header = (
                f"#Software: Microsoft Exchange Server\r\n#Version: {self.version}\r\n"
                f"#Log-type: {self.log_type}\r\n#Date: {_iso(now)}\r\n"
                f"#Fields: {self.fields}\r\n"
            )
            handle.write(header)
            handle.flush()
            self._size += len(header.encode())
        self._header_size = len(header.encode()) if fresh else 0
        self._file, self._hour, self._n = handle, hour, n
        self.prune(now, keep=path.name)
        return handle

    def prune(self, now: datetime.datetime, keep: str | None = None) -> list[str]:
        """Delete this log's files past the age limit, then the oldest past the directory
        size limit; never ``keep`` (the file being written). The names deleted, oldest first."""
        files: list[tuple[str, int, str, int]] = []  # (hour, n, name, size)
        try:
            entries = list(self.directory.iterdir())
        except FileNotFoundError:
            return []
        for entry in entries:
            match = _NAME.fullmatch(entry.name)
            if match is None or match["prefix"] != self.prefix:
                continue
            with contextlib.suppress(FileNotFoundError):
                files.append((match["hour"], int(match["n"]), entry.name, entry.stat().st_size))
        files.sort()
        doomed: list[str] = []
        if self.max_age > datetime.timedelta(0):
            doomed += [name for hour, _, name, _ in files
                       if name != keep and _end_of_hour(hour) + self.max_age < now]
        if self.max_directory_size is not None:
            # room for the open file to grow to its limit: the others share the rest
            total = sum(size for _, _, name, size in files if name not in doomed and name != keep)
            if keep is not None:
                total += max(self._size, self.max_file_size or 0)
            for _, _, name, size in files:
                if total <= self.max_directory_size:
                    break
                if name != keep and name not in doomed:
                    doomed.append(name)
                    total -= size
        for name in doomed:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
        return doomed

    _n = 1

    def write(self, fields: list[str], when: datetime.datetime | None = None) -> None:
        """One line, stamped ``when`` (a moment the caller read from this log's clock) or now."""
        now = self.clock() if when is None else when
        line = ",".join([self._stamp(now), *(csv_field(f) for f in fields)]) + "\r\n"
        if line.isascii():
            size = len(line)
        else:  # a client can send any bytes: they reach the log as escapes, never as an error
            encoded = line.encode("utf-8", "backslashreplace")
            line, size = encoded.decode("utf-8"), len(encoded)
        if self._file is None or self._hour_end is None or now >= self._hour_end:
            self._open(now)
        elif self._size + size > self._file_limit and self._size > self._header_size:
            self._open(now, full=True)  # the line would pass the limit: it opens the next file
        self._pending.append(line)
        self._size += size
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def _stamp(self, now: datetime.datetime) -> str:
        """``_iso(now)``, formatting the part up to the second once per second."""
        second = now.replace(microsecond=0)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp_prefix = _iso(second)[:-5]
        return f"{self._stamp_prefix}.{now.microsecond // 1000:03d}Z"

    def flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        if pending and self._file is not None:
            self._file.write("".join(pending))
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None


class ProtocolLogSession:
    def __init__(self, log: ProtocolLog, connector_id: str, session_id: str,
                 local_endpoint: str, remote_endpoint: str) -> None:
        self.log = log
        self.connector_id = connector_id
        self.session_id = session_id
        self.local_endpoint = local_endpoint
        self.remote_endpoint = remote_endpoint
        self.sequence = 0

    def _event(self, event: str, data: str = "", context: str = "",
               when: datetime.datetime | None = None) -> None:
        self.log.write([self.connector_id, self.session_id, str(self.sequence),
                        self.local_endpoint, self.remote_endpoint, event, data, context], when)
        self.sequence += 1

    def connect(self, when: datetime.datetime | None = None) -> None:
        """The ``+`` line, stamped ``when`` (the session's start, which the ``receiving
        message`` lines repeat) or now."""
        self._event("+", when=when)

    def sent(self, line: str) -> None:
        self._event(">", flatten_reply(line))

    def received(self, line: str) -> None:
        self._event("<", line)

    def received_redacted(self, placeholder: str = "<authentication information>") -> None:
        self._event("<", placeholder)

    def info(self, data: str, context: str = "") -> None:
        self._event("*", data, context)

    def disconnect(self, context: str = "Local") -> None:
        self._event("-", "", context)
