"""What a public parser of Exchange's SMTP protocol logs extracts from a log folder.

The rules are those of the PowerShell module ExchangeLogs (github.com/AndiBellstedt/ExchangeLogs,
written against real Exchange 2013-2019 logs; exchange.md §12.7, S13), re-expressed in Python
so the lab's logs can be read the way that module reads them. PowerShell is not installed
here, so the module itself is not run; this is a reading of its file reader
(``Get-ELExchangeLog``, ``Import-LogData``) and of its session rules
(``Expand-LogRecordSmtp``), including its quirks, so that a test passes only if the module
would find what the test asserts:

Files: every ``*.log`` file of the folder (any case) that is not empty, in order of name. The
lines starting with ``#`` are the header; the field names are those of the ``#Fields:`` line;
only lines starting with a digit are records, read as CSV. Records are grouped by
``session-id`` per file, in order of first appearance. A session whose records are split
between two consecutive files is joined when its id is among the last 20 groups of the first
file and the first 21 of the next.

A session counts only with both a ``+`` and a ``-`` record; any other is skipped as
"fragmented". Then, over the data fields of its records (comparisons ignore case unless
noted; PowerShell's ``Trim``/``TrimStart``/``TrimEnd`` with a string argument remove any of its
characters, not the string):

- server HELO name: the first data like ``220 * Microsoft*``, with the characters ``2``,
  ``0`` and space trimmed from its start, up to the first space;
- server options: what follows ``250<sp><sp><host><sp>Hello<sp>[<ip>]<sp>`` (two spaces);
- client HELO name: each distinct data like ``EHLO *``, trimmed of the characters
  ``E H L O`` and space (case-sensitive: ``ehlo x`` keeps its ``ehlo``); HELO is not read;
- MAIL FROM / RCPT TO: the data like ``MAIL FROM:*`` / ``RCPT TO:*``, the address between an
  optional ``<`` and the first ``>`` (MAIL FROM distinct);
- queued id: data matching ``^250 2.6.0 <...``, trimmed of the characters ``250 .6<`` and cut
  at the first ``>``; the InternalId up to the next comma; the size before `` bytes in ``;
- tarpit: data like ``Tarpit*``; the duration is the sum of the *seconds component* of each
  ``Tarpit for '<timespan>'``; the message what follows ``due to '`` (or the whole text);
- authentication: only with a data starting ``AUTH `` (case-sensitive); the user is the data
  of the records whose context is ``authenticated``; the result the last data among
  ``235 2.7.0 Authentication successful``, ``504 5.7.4 Unrecognized authentication type`` and
  ``535 5.7.3 Authentication unsuccessful``. (The module takes the mechanism from ``$Matches``
  after a ``Where-Object -Match``; this reading takes the word after ``AUTH``.)
- TLS: only with a data starting `` CN=`` (case-sensitive); from the ``*`` records with a
  context like ``Sending certificate*``, ``Remote certificate*``, ``TLS protocol*`` or
  ``*TlsDomainCapabilities=*``: the distinct contexts like ``TLS *`` joined by commas, the
  protocol after ``TLS protocol``, the words after ``encryption algorithm``,
  ``hash algorithm`` and ``exchange algorithm``; each certificate line's fields from its end
  (names, not after, not before, thumbprint, serial number, then the subject; the module's
  "issuer" field ends up holding the subject); ``TlsDomainCapabilities``, ``Status`` and
  ``Domain`` from the ``; ``-separated context that holds ``; Status='``;
- final status: the context of the last record, ``Local`` read as ``OK``; the finalize
  message the data of the record before the last.

Send logs (``#Log-type: SMTP Send Protocol Log``) are read by the same rules (the module reads
both kinds alike: its rules look at the data, not at the direction). One reading is this
project's, not the module's: ``sent_messages``, the (RecordId, InternetMessageId) of each
``sending message with RecordId <n> and InternetMessageId <id>`` information line of a send
session (exchange.md §6.1), which a reader of send logs needs to tie a session to a message.
"""

from __future__ import annotations

import csv
import datetime
import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

Record = dict[str, str]


@dataclass
class Group:
    session_id: str
    records: list[Record]
    log_type: str
    file_name: str


@dataclass(frozen=True)
class Certificate:
    text: str
    subject: str
    serial: str
    thumbprint: str
    not_before: datetime.datetime | None
    not_after: datetime.datetime | None
    names: str


@dataclass(frozen=True)
class Session:
    session_id: str
    connector_id: str
    server_name: str
    connector_name: str
    local_endpoint: str
    remote_endpoint: str
    sequence_count: int
    server_name_helo: str
    server_options: str
    client_name_helo: str
    mail_from: str
    rcpt_to: str
    smtp_id: str
    internal_id: str
    mail_size: int
    tarpit_detect: bool
    tarpit_duration: datetime.timedelta
    tarpit_message: str
    authentication_enabled: bool
    authentication_type: str
    authentication_user: tuple[str, ...]
    authentication_message: str
    tls_enabled: bool
    tls_crypto: str
    tls_protocol: str
    tls_algorithm_encryption: str
    tls_algorithm_mac_hash: str
    tls_algorithm_key_exchange: str
    tls_certificate_server: Certificate | None
    tls_certificate_remote: Certificate | None
    tls_domain_capabilities: str
    tls_status: str
    tls_domain: str
    final_status: str
    finalize_message: str
    log_text: str
    log_type: str = ""
    sent_messages: tuple[tuple[str, str], ...] = ()


# --- PowerShell's operators and string methods, as the module uses them ------------------------

def like(value: str, pattern: str) -> bool:
    """``-like``: a wildcard match ignoring case."""
    return fnmatch.fnmatchcase(value.casefold(), pattern.casefold())


def clike(value: str, pattern: str) -> bool:
    """``-clike``: a wildcard match, case-sensitive."""
    return fnmatch.fnmatchcase(value, pattern)


def trim(value: str, chars: str) -> str:
    """``.Trim("...")``: a string argument becomes a set of characters."""
    return value.strip(chars)


def trim_start(value: str, chars: str) -> str:
    return value.lstrip(chars)


def trim_end(value: str, chars: str) -> str:
    return value.rstrip(chars)


def ps_split(value: str, pattern: str) -> list[str]:
    """``-split``: a regular expression ignoring case; captured groups are kept."""
    return re.split(pattern, value, flags=re.IGNORECASE)


def unique(values: Iterable[str]) -> list[str]:
    """``Select-Object -Unique`` (case-sensitive), first occurrences in order."""
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def timespan(text: str) -> datetime.timedelta | None:
    """``-as [timespan]``: ``[-][d.]hh:mm[:ss[.fffffff]]``, None when it does not parse."""
    m = re.fullmatch(r"(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?",
                     text.strip())
    if m is None:
        return None
    days, hours, minutes = int(m[2] or 0), int(m[3]), int(m[4])
    seconds, fraction = int(m[5] or 0), int((m[6] or "0").ljust(7, "0"))
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    span = datetime.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds,
                              microseconds=fraction // 10)
    return -span if m[1] else span


def seconds_component(span: datetime.timedelta) -> int:
    """``TimeSpan.Seconds``: the seconds part (0-59), not the total."""
    return int(span.total_seconds()) % 60 if span >= datetime.timedelta(0) else -(
        int(-span.total_seconds()) % 60)


def parse_date(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- the file reader --------------------------------------------------------------------------

def import_log_data(path: Path) -> list[Group]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    metadata = unique([line for line in lines if line.startswith("#")][:7])
    fields = metadata[-1].split(": ")[-1].split(",")
    meta = {}
    for line in metadata[:-1]:
        key, _, value = line.lstrip("#").partition(": ")
        meta[key] = value
    rows = csv.reader([line for line in lines if line[:1].isdigit()])
    groups: dict[str, Group] = {}
    key = next(f for f in fields if f.casefold() == "session-id")
    for row in rows:
        record = dict(zip(fields, [*row, *[""] * (len(fields) - len(row))], strict=False))
        sid = record[key]
        if sid not in groups:
            groups[sid] = Group(sid, [], meta.get("Log-type", ""), path.name)
        groups[sid].records.append(record)
    return list(groups.values())


def read_folder(folder: Path) -> list[Group]:
    """Every session group of the folder's logs, sessions split across two files joined."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and like(p.name, "*.log") and p.stat().st_size > 0)
    if not files:
        return []
    out: list[Group] = []
    previous = import_log_data(files[0])
    for path in files[1:]:
        current = import_log_data(path)
        overlap = ({g.session_id for g in previous[-20:]}
                   & {g.session_id for g in current[:21]})
        for sid in overlap:
            first = next(g for g in previous if g.session_id == sid)
            second = next(g for g in current if g.session_id == sid)
            current.remove(second)
            previous.remove(first)
            previous.append(Group(sid, first.records + second.records, first.log_type,
                                  first.file_name))
        out += previous
        previous = current
    return out + previous


# --- the session rules ------------------------------------------------------------------------

def _certificate(text: str) -> Certificate:
    rest = text.strip()
    tokens: list[str] = []
    for _ in range(5):  # names, not after, not before, thumbprint, serial number
        token = rest.split(" ")[-1]
        tokens.append(token)
        rest = trim_end(rest, token).rstrip()
    names, not_after, not_before, thumbprint, serial = tokens
    issuer = "CN=" + [*ps_split(rest, " CN="), ""][1]
    subject = trim_end(rest, issuer).rstrip()
    return Certificate(text=text.strip(), subject=subject, serial=serial, thumbprint=thumbprint,
                       not_before=parse_date(not_before), not_after=parse_date(not_after),
                       names=names)


def _status_part(parts: Sequence[str], name: str) -> str:
    found = [p for p in parts if like(p, f"{name}=*")]
    return (found[0].split("=")[1] if found else "").strip("'")


def expand(group: Group) -> Session | None:
    """One session as the module reports it; None for a fragment (no ``+`` or no ``-``)."""
    records = group.records
    if not any(r["event"] == "+" for r in records) or not any(r["event"] == "-" for r in records):
        return None
    data = [r["data"] for r in records]
    log_text = "\n".join(r["event"] + " " + r["data"]
                         + (f" (context: {r['context']})" if r["context"] else "")
                         for r in records)
    connector_id = records[0]["connector-id"]
    server_name = connector_id.split("\\")[0]
    connector_name = connector_id.split("\\")[1] if "\\" in connector_id else connector_id

    banner = next((d for d in data if like(d, "220 * Microsoft*")), "")
    server_name_helo = trim_start(banner, "220 ").split(" ")[0] if banner else ""
    options = [m["opts"] for d in data
               if (m := re.match(r"^250\s\s\S+\sHello\s\[\S+]\s(?P<opts>(\S|\s)+)", d, re.I))]
    client_helo = [trim(d, "EHLO ") for d in unique(d for d in data if like(d, "EHLO *"))]

    def addresses(prefix: str) -> list[str]:
        found = []
        for d in data:
            if like(d, prefix + "*"):
                for piece in ps_split(d, re.escape(prefix)):
                    if piece and (address := re.sub(r"^<", "", piece.strip()).split(">")[0]):
                        found.append(address)
        return found

    mail_from = unique(addresses("MAIL FROM:"))
    rcpt_to = addresses("RCPT TO:")

    queued = [d for d in data if re.match(r"^250\s2.6.0\s<(?P<id>\S+)", d, re.I)]
    smtp_ids = [trim(d, "250 2.6.0 <").split(">")[0] for d in queued]
    internal_ids = [ps_split(d, "InternalId=")[1].split(",")[0].strip()
                    for d in queued if len(ps_split(d, "InternalId=")) > 1]
    size = sum(int(ps_split(d, " bytes in ")[0].split(" ")[-1])
               for d in queued if like(d, "*bytes in*"))

    tarpits = [d for d in data if like(d, "Tarpit*")]
    duration = datetime.timedelta(0)
    message = ""
    if tarpits:
        spans = [timespan(d.replace("Tarpit for '", "").split("'")[0]) for d in tarpits]
        duration = datetime.timedelta(
            seconds=sum(seconds_component(s) for s in spans if s is not None))
        message = [p for d in tarpits for p in ps_split(d, r"(due\sto\s')")][-1].strip("'")

    auth = any(clike(d, "AUTH *") for d in data)
    auth_type, auth_user, auth_message = "", (), ""
    if auth:
        methods = [m[1] for d in data if (m := re.match(r"^AUTH\s(\S+)", d, re.I))]
        auth_type = methods[-1] if methods else ""
        auth_user = tuple(r["data"] for r in records if like(r["context"], "authenticated"))
        texts = {t.casefold() for t in ("235 2.7.0 Authentication successful",
                                         "504 5.7.4 Unrecognized authentication type",
                                         "535 5.7.3 Authentication unsuccessful")}
        results = [d for d in data if d.casefold() in texts]
        auth_message = results[-1] if results else ""

    tls = any(clike(d, " CN=*") for d in data)
    crypto = protocol = encryption = mac_hash = key_exchange = ""
    server_cert = remote_cert = None
    capabilities = status = domain = ""
    if tls:
        tls_records = [r for r in records if r["event"] == "*" and (
            like(r["context"], "Sending certificate*") or like(r["context"], "Remote certificate*")
            or like(r["context"], "TLS protocol*")
            or like(r["context"], "*TlsDomainCapabilities=*"))]
        crypto = ",".join(unique(r["context"] for r in tls_records if like(r["context"], "TLS *")))
        if crypto:
            protocol = crypto.replace("TLS protocol ", "").split(" ")[0]

            def word_after(label: str) -> str:
                parts = ps_split(crypto, label)
                return parts[1].split(" ")[0] if len(parts) > 1 else ""

            encryption = word_after("encryption algorithm ")
            mac_hash = word_after("hash algorithm ")
            key_exchange = word_after("exchange algorithm ")
        sending = [r["data"] for r in tls_records if like(r["context"], "Sending certificat*")]
        remote = [r["data"] for r in tls_records if like(r["context"], "Remote certificat*")]
        server_cert = _certificate(sending[0]) if sending and sending[0] else None
        remote_cert = _certificate(remote[0]) if remote and remote[0] else None
        parts = [p for r in tls_records if like(r["context"], "*; Status='*")
                 for p in r["context"].split("; ")]
        capabilities = _status_part(parts, "TlsDomainCapabilities")
        status = _status_part(parts, "Status")
        domain = _status_part(parts, "Domain")

    last = records[-1]["context"]
    final = "OK" if like(last, "Local") else (last or "UNKNOWN")
    return Session(
        session_id=group.session_id, connector_id=connector_id, server_name=server_name,
        connector_name=connector_name, local_endpoint=records[-1]["local-endpoint"],
        remote_endpoint=records[-1]["remote-endpoint"], sequence_count=len(records),
        server_name_helo=server_name_helo, server_options=",".join(options),
        client_name_helo=",".join(client_helo), mail_from=",".join(mail_from),
        rcpt_to=",".join(rcpt_to), smtp_id=",".join(s.strip() for s in smtp_ids),
        internal_id=",".join(internal_ids), mail_size=size, tarpit_detect=bool(tarpits),
        tarpit_duration=duration, tarpit_message=message, authentication_enabled=auth,
        authentication_type=auth_type, authentication_user=auth_user,
        authentication_message=auth_message, tls_enabled=tls, tls_crypto=crypto,
        tls_protocol=protocol, tls_algorithm_encryption=encryption,
        tls_algorithm_mac_hash=mac_hash, tls_algorithm_key_exchange=key_exchange,
        tls_certificate_server=server_cert, tls_certificate_remote=remote_cert,
        tls_domain_capabilities=capabilities, tls_status=status, tls_domain=domain,
        final_status=final, finalize_message=data[-2] if len(data) > 1 else "",
        log_text=log_text, log_type=group.log_type,
        sent_messages=tuple((m["id"], m["mid"]) for r in records if r["event"] == "*" and (
            m := _SENDING.fullmatch(r["context"]))),
    )


_SENDING = re.compile(r"sending message with RecordId (?P<id>\d+) and InternetMessageId "
                      r"(?P<mid>.*)")


def sessions(folder: Path) -> tuple[list[Session], list[str]]:
    """The sessions the module reports for a folder, and the ids it skips as fragments."""
    found, fragments = [], []
    for group in read_folder(folder):
        session = expand(group)
        if session is None:
            fragments.append(group.session_id)
        else:
            found.append(session)
    return found, fragments
