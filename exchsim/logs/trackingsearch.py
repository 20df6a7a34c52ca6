"""Reading message tracking logs back, as Get-MessageTrackingLog does (exchange.md §6.2).

Each file is read with its own ``#Fields:`` line (so a file of another field list still reads),
with Python's csv module: the quoting the writer uses (logs/protocol.py ``csv_field``) is
standard CSV. Filters follow the cmdlet's parameters: ``Sender`` and ``Recipients`` compare
addresses without case (a line matches when one of its recipients is one of those asked for),
``MessageId`` compares exactly with or without the angle brackets, ``EventId`` without case,
``Start`` is inclusive and ``End`` exclusive, as the cmdlet documents. Results come in time
order, across the ``MSGTRK`` and ``MSGTRKMD`` files of every server asked for.
"""

from __future__ import annotations

import csv
import datetime
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_FILE = re.compile(r"MSGTRK[A-Z]*[0-9]{10}-[0-9]+\.LOG")


@dataclass(frozen=True, slots=True)
class Entry:
    server: str
    fields: dict[str, str]

    @property
    def timestamp(self) -> datetime.datetime:
        return parse_time(self.fields.get("date-time", ""))

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    @property
    def recipients(self) -> list[str]:
        value = self.get("recipient-address")
        return [r for r in value.split(";") if r]


def parse_time(text: str) -> datetime.datetime:
    """``2024-03-13T09:01:18.723Z`` (or any ISO 8601 time; naive means UTC)."""
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def read_file(path: Path, server: str) -> Iterator[Entry]:
    names: list[str] = []
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(line for line in handle if not _comment(line, names))
        for row in rows:
            if names and row:
                yield Entry(server, dict(zip(names, row, strict=False)))


def _comment(line: str, names: list[str]) -> bool:
    """Whether ``line`` is a ``#`` header line; a ``#Fields:`` line sets ``names``."""
    if not line.startswith("#"):
        return False
    if line.startswith("#Fields:"):
        names[:] = line[len("#Fields:"):].strip().split(",")
    return True


def log_files(logs: Path, servers: Sequence[str]) -> Iterator[tuple[str, Path]]:
    """(server, file) for each tracking file under ``DATA/logs/<server>/MessageTracking``."""
    for server in servers:
        directory = logs / server / "MessageTracking"
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if _FILE.fullmatch(path.name):
                yield server, path


def _bare(message_id: str) -> str:
    return message_id.strip().removeprefix("<").removesuffix(">")


@dataclass(frozen=True, slots=True)
class Query:
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    message_id: str | None = None
    event_id: str | None = None
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None

    def matches(self, entry: Entry) -> bool:
        if self.sender is not None and entry.get("sender-address").lower() != (
                self.sender.lower()):
            return False
        if self.recipients:
            wanted = {r.lower() for r in self.recipients}
            if not wanted.intersection(r.lower() for r in entry.recipients):
                return False
        if self.message_id is not None and _bare(entry.get("message-id")) != _bare(
                self.message_id):
            return False
        if self.event_id is not None and entry.get("event-id").upper() != self.event_id.upper():
            return False
        if self.start is not None or self.end is not None:
            when = entry.timestamp
            if self.start is not None and when < self.start:
                return False
            if self.end is not None and when >= self.end:
                return False
        return True


def search(logs: Path, servers: Sequence[str], query: Query) -> list[Entry]:
    found = [entry for server, path in log_files(logs, servers)
             for entry in read_file(path, server) if query.matches(entry)]
    found.sort(key=lambda e: e.timestamp)
    return found


# -- output as PowerShell shows Get-MessageTrackingLog's objects -------------------------------

# The default table view: Timestamp, EventId, Source, Sender, Recipients, MessageSubject.
TABLE = (("Timestamp", "date-time"), ("EventId", "event-id"), ("Source", "source"),
         ("Sender", "sender-address"), ("Recipients", "recipient-address"),
         ("MessageSubject", "message-subject"))
# Format-List: the cmdlet's property names for the fields.
LIST = (
    ("Timestamp", "date-time"), ("ClientIp", "client-ip"), ("ClientHostname", "client-hostname"),
    ("ServerIp", "server-ip"), ("ServerHostname", "server-hostname"),
    ("SourceContext", "source-context"), ("ConnectorId", "connector-id"), ("Source", "source"),
    ("EventId", "event-id"), ("InternalMessageId", "internal-message-id"),
    ("MessageId", "message-id"), ("NetworkMessageId", "network-message-id"),
    ("Recipients", "recipient-address"), ("RecipientStatus", "recipient-status"),
    ("TotalBytes", "total-bytes"), ("RecipientCount", "recipient-count"),
    ("RelatedRecipientAddress", "related-recipient-address"), ("Reference", "reference"),
    ("MessageSubject", "message-subject"), ("Sender", "sender-address"),
    ("ReturnPath", "return-path"), ("Directionality", "directionality"),
    ("TenantId", "tenant-id"), ("OriginalClientIp", "original-client-ip"),
    ("OriginalServerIp", "original-server-ip"), ("CustomData", "custom-data"),
    ("TransportTrafficType", "transport-traffic-type"), ("LogId", "log-id"),
    ("SchemaVersion", "schema-version"),
)


def _value(entry: Entry, field: str) -> str:
    if field == "date-time":
        return entry.timestamp.strftime("%Y-%m-%d %H:%M:%S")
    if field in ("recipient-address", "recipient-status"):
        return "{" + ", ".join(v for v in entry.get(field).split(";") if v) + "}"
    return entry.get(field)


def format_table(entries: Iterable[Entry], width: int = 40) -> str:
    rows = [[h for h, _ in TABLE]]
    rows.append(["-" * len(h) for h, _ in TABLE])
    for entry in entries:
        rows.append([_clip(_value(entry, f), width) for _, f in TABLE])
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE))]
    return "\n".join(" ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def format_list(entries: Iterable[Entry]) -> str:
    width = max(len(h) for h, _ in LIST)
    blocks = ["\n".join(f"{h.ljust(width)} : {_value(e, f)}" for h, f in LIST)
              for e in entries]
    return "\n\n".join(blocks)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
