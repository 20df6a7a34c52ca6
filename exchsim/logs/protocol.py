"""SMTP protocol log in Exchange's CSV format (exchange.md §6.1).

Files ``RECVyyyymmddHH-n.LOG`` (send side ``SENDyyyymmddHH-n.LOG``): hourly, as real 2013+
files are named, ``n`` counting up when a file passes ``max_file_size``. Each starts with the
five ``#`` header lines. Lines end in CRLF (Exchange is a Windows product). Inside a running
event loop, the lines of one loop iteration are written together at its end (one write for
many sessions' lines), so a reader sees them as soon as the loop has run; outside a loop each
line is written at once. Nothing is fsynced: a log is not a message.

Multi-line replies are flattened into one data field like 2013+ logs do; exchsim writes the
2019 form with two spaces after the code (``250  host Hello [ip] SIZE ...``, see
exchange.md §1.2) rather than the one-space form of the sample in exchange.md §6.1.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import IO, Literal

Clock = Callable[[], datetime.datetime]
FIELDS = (
    "date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,"
    "event,data,context"
)




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
    def __init__(
        self,
        directory: Path,
        kind: Literal["SmtpReceive", "SmtpSend"],
        clock: Clock,
        max_file_size: int = 10 * 1024 * 1024,
    ) -> None:
        self.directory = directory
        self.kind = kind
        self.clock = clock
        self.max_file_size = max_file_size
        self._file: IO[str] | None = None
        self._hour = ""
        self._hour_end: datetime.datetime | None = None
        self._size = 0
        self._pending: list[str] = []
        self._flush_scheduled = False
        self._stamp_second: datetime.datetime | None = None
        self._stamp_prefix = ""

    @property
    def prefix(self) -> str:
        return "RECV" if self.kind == "SmtpReceive" else "SEND"

    def session(
        self, connector_id: str, session_id: str, local_endpoint: str, remote_endpoint: str
    ) -> ProtocolLogSession:
        return ProtocolLogSession(self, connector_id, session_id, local_endpoint, remote_endpoint)

    def _open(self, now: datetime.datetime) -> IO[str]:
        utc = now.astimezone(datetime.UTC)
        hour = utc.strftime("%Y%m%d%H")
        if self._file is not None and hour == self._hour and self._size < self.max_file_size:
            return self._file
        self.close()
        self._hour_end = utc.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(
            hours=1)
        self.directory.mkdir(parents=True, exist_ok=True)
        n = 1
        if hour == self._hour:
            n = self._n + 1
        path = self.directory / f"{self.prefix}{hour}-{n}.LOG"
        while path.exists() and path.stat().st_size >= self.max_file_size:
            n += 1
            path = self.directory / f"{self.prefix}{hour}-{n}.LOG"
        fresh = not path.exists()
        handle = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._size = path.stat().st_size if not fresh else 0
        if fresh:
            log_type = "SMTP Receive Protocol Log" if self.kind == "SmtpReceive" else (
                "SMTP Send Protocol Log")
            header = (
                "#Software: Microsoft Exchange Server\r\n#Version: 15.0.0.0\r\n"
                f"#Log-type: {log_type}\r\n#Date: {_iso(now)}\r\n#Fields: {FIELDS}\r\n"
            )
            handle.write(header)
            handle.flush()
            self._size += len(header.encode())
        self._file, self._hour, self._n = handle, hour, n
        return handle

    _n = 1

    def write(self, fields: list[str]) -> None:
        now = self.clock()
        if (self._file is None or self._hour_end is None or now >= self._hour_end
                or self._size >= self.max_file_size):
            self._open(now)
        line = ",".join([self._stamp(now), *(csv_field(f) for f in fields)]) + "\r\n"
        if line.isascii():
            size = len(line)
        else:  # a client can send any bytes: they reach the log as escapes, never as an error
            encoded = line.encode("utf-8", "backslashreplace")
            line, size = encoded.decode("utf-8"), len(encoded)
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

    def _event(self, event: str, data: str = "", context: str = "") -> None:
        self.log.write([self.connector_id, self.session_id, str(self.sequence),
                        self.local_endpoint, self.remote_endpoint, event, data, context])
        self.sequence += 1

    def connect(self) -> None:
        self._event("+")

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
