"""The header firewall, authentication stamping and Received headers (exchange.md §5).

Messages are bytes with CRLF line endings. The header block is split into fields, each kept
as its raw bytes (folded continuation lines included) so that what is not changed goes on
byte for byte.

Where the header block ends is decided once, by :func:`parse_message`, and the firewall and
every writer use that decision, so no line can be a header to one reader of a stored message
and body to exchsim. The rules (RFC 5322 §2.2, §3.6.8, with the obsolete syntax of §4.5):

- A field is a name of printable US-ASCII other than the colon (RFC 5322 ``ftext``), optional
  spaces or tabs, a colon, and the value to the end of the line, followed by any number of
  continuation lines (lines that start with a space or a tab; a line of blanks only is one).
  WSP before the colon is the obsolete ``field-name *WSP ":"`` that RFC 5322 §4.5 says to
  accept and not to generate: the field is a header like any (``X-MS-Exchange-Organization-Foo
  : v`` is removed by the firewall as ``X-MS-Exchange-Organization-Foo: v`` is) and is written
  without the WSP, so a strict reader of the stored copy (Python's ``email``) agrees too.
- The header block ends at the first empty line (the separator, not kept in either part).
- It also ends at the first line that is neither a field nor a continuation: a line without a
  colon, one that starts with a colon, a name with a space or a byte outside printable
  US-ASCII, a continuation line before any field, a line with a bare CR or LF (the session
  core rewrites those to CRLF before a message gets here, ``smtp/wire.py``). That line and all
  that follows are the body, as Python's ``email`` parser and other lenient readers read it.
  exchsim's reading where the sources on Exchange are silent: such a message is accepted, not
  refused, and nothing in it is dropped.
- Every message is written with a clean header block: only fields as above, then an empty line
  whenever there is a body (:meth:`Message.to_bytes` writes the separator the client left out),
  so whatever follows the separator is body to every reader and nothing the client wrote past
  the header block can sit beside the headers a server stamps.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass

from exchsim.policy import schannel
from exchsim.policy.permissions import Right, Rights

ORG_PREFIX = b"x-ms-exchange-organization-"
FOREST_PREFIX = b"x-ms-exchange-forest-"
NETWORK_MESSAGE_ID = "X-MS-Exchange-Organization-Network-Message-Id"
AV_STAMP = "X-MS-Exchange-Organization-AVStamp-Enterprise"
SCL = "X-MS-Exchange-Organization-SCL"
END_TO_END_LATENCY = "X-MS-Exchange-Transport-EndToEndLatency"
BCC_FOLDERING = "X-MS-Exchange-Processed-By-BccFoldering"
# One field: its name (RFC 5322 ftext), WSP before the colon (obsolete syntax, kept apart to be
# dropped), the rest of the line, then its continuation lines. No bare CR or LF anywhere.
_FIELD = re.compile(rb"([!-9;-~]+)([ \t]*):[^\r\n]*(?:\r\n|\Z)(?:[ \t][^\r\n]*(?:\r\n|\Z))*")
CLASSIFICATION = "X-MS-Exchange-Organization-Classification"
#: The built-in ExPartnerMail classification, "Domain Secured" in Outlook (exchange.md §4.2).
PARTNER_CLASSIFICATION = "030e9e2f-134b-4020-861c-5bfc616f113d"

AUTH_HEADERS = (
    b"x-ms-exchange-organization-authas",
    b"x-ms-exchange-organization-authmechanism",
    b"x-ms-exchange-organization-authsource",
    b"x-ms-exchange-organization-authdomain",
    b"x-ms-exchange-organization-authcertificatesubject",
    b"x-ms-exchange-organization-authcertificateissuer",
    b"x-ms-exchange-organization-authcertificateserialnumber",
)


@dataclass(frozen=True, slots=True)
class Field:
    name: bytes  # as written
    raw: bytes  # the whole field, folded lines included, ending in CRLF

    @property
    def key(self) -> bytes:
        return self.name.strip().lower()

    @property
    def value(self) -> str:
        _, _, value = self.raw.partition(b":")
        unfolded = b" ".join(line.strip() for line in value.splitlines())
        return unfolded.decode("utf-8", "replace").strip()


@dataclass(frozen=True, slots=True)
class Message:
    fields: tuple[Field, ...]
    body: bytes  # everything after the header block (the blank line itself not included)
    has_separator: bool = True  # the client's header block ended with the blank line

    @property
    def header_size(self) -> int:
        return sum(len(f.raw) for f in self.fields)

    def values(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [f.value for f in self.fields if f.key == key]

    def first(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    def to_bytes(self) -> bytes:
        """The message with its header block, then the separator if there is a body."""
        head = b"".join(f.raw for f in self.fields)
        if self.has_separator or self.body:
            return head + b"\r\n" + self.body
        return head

    def prepend(self, *new: Field) -> Message:
        return Message((*new, *self.fields), self.body, self.has_separator)

    def without(self, keys: Sequence[bytes]) -> Message:
        drop = set(keys)
        return Message(
            tuple(f for f in self.fields if f.key not in drop), self.body, self.has_separator
        )


def parse_message(data: bytes) -> Message:
    """Split a CRLF message into header fields and body (the module docstring has the rules)."""
    fields: list[Field] = []
    pos = 0
    match = _FIELD.match
    while (m := match(data, pos)) is not None:
        raw = m.group()
        name = m.group(1)
        if raw[len(name)] != 58 or raw[-1] != 10:  # WSP before the colon, or no CRLF at the end
            raw = _clean_field(name, raw[m.end(2) - pos :])
        fields.append(Field(name, raw))
        pos = m.end()
    if data.startswith(b"\r\n", pos):
        return Message(tuple(fields), data[pos + 2 :], True)
    return Message(tuple(fields), data[pos:], False)


def _clean_field(name: bytes, rest: bytes) -> bytes:
    """A field as exchsim writes it: no WSP before the colon, every line ending in CRLF."""
    raw = name + rest
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def sender_addresses(values: Sequence[str]) -> list[str]:
    """The addresses of address-list header values (From, Sender) for sender authorization.

    Python's address parser (``email.utils.getaddresses``) recurses once per nested comment
    and once per nested group, so a From of 5,000 ``(`` would raise RecursionError. Every
    level of that recursion consumes one ``(`` or one ``:``; a value with more of them than
    :data:`MAX_ADDRESS_NESTING` is not handed to it. exchsim's reading where the sources are
    silent: such a value is not refused for its form; every address-like token in it (text
    with an ``@`` between the delimiters of RFC 5322) counts as a sender, so an address a
    lenient reader could show is checked all the same. Linear in the length, no recursion.
    """
    found: list[str] = []
    for value in values:
        if value.count("(") + value.count(":") > MAX_ADDRESS_NESTING:
            found.extend(t for t in _DELIMITERS.split(value) if "@" in t)
        else:
            found.extend(a for _, a in email.utils.getaddresses([value]) if a)
    return found


MAX_ADDRESS_NESTING = 100
_DELIMITERS = re.compile(r'[\s<>()\[\]:;,"\\]+')


def make_field(name: str, value: str) -> Field:
    return Field(name.encode(), f"{name}: {value}\r\n".encode())


def firewall(message: Message, rights: Rights) -> Message:
    """Remove the header families the session may not set (exchange.md §5.1)."""
    keep_org = Right.ACCEPT_HEADERS_ORGANIZATION in rights
    keep_forest = Right.ACCEPT_HEADERS_FOREST in rights
    keep_routing = Right.ACCEPT_HEADERS_ROUTING in rights

    def allowed(f: Field) -> bool:
        key = f.key
        if key.startswith(ORG_PREFIX):
            return keep_org
        if key.startswith(FOREST_PREFIX):
            return keep_forest
        if key == b"received" or key.startswith(b"resent-"):
            return keep_routing
        return True

    return Message(tuple(f for f in message.fields if allowed(f)), message.body,
                   message.has_separator)


def send_firewall(data: bytes, *, exchange_of_organization: bool) -> bytes:
    """The header firewall on the way out (exchange.md §5.1, §12.5): a next hop that is not an
    Exchange server of the organization lacks ms-Exch-Send-Headers-Organization and -Forest, so
    every X-MS-Exchange-Organization-* and X-MS-Exchange-Forest-* field of the header block is
    removed; Received and Resent-* stay (ms-Exch-Send-Headers-Routing is granted to everyone).
    The body, and the header blocks of messages attached in it, are not touched."""
    if exchange_of_organization:
        return data
    message = parse_message(data)
    kept = tuple(f for f in message.fields
                 if not (f.key.startswith(ORG_PREFIX) or f.key.startswith(FOREST_PREFIX)))
    if len(kept) == len(message.fields):
        return data
    return Message(kept, message.body, message.has_separator).to_bytes()


def stamp_authentication(
    message: Message,
    *,
    rights: Rights,
    auth_as: str,
    mechanism: str,
    server_fqdn: str,
    auth_domain: str | None = None,
) -> Message:
    """Re-evaluate the authentication headers (exchange.md §5.2), appended at the end.

    A message from a session that may send organization headers and already carries AuthAs
    is left as it is (it came from another Exchange server). Otherwise the auth headers are
    removed and stamped anew; an anonymous message keeps its earlier AuthSource when it is
    still there and already said Anonymous.
    """
    stripped, stamped = _authentication(message, rights, auth_as, mechanism, server_fqdn,
                                        auth_domain)
    if stamped is None:
        return message
    return Message((*stripped.fields, *stamped), stripped.body, stripped.has_separator)


def _authentication(
    message: Message, rights: Rights, auth_as: str, mechanism: str, source: str,
    auth_domain: str | None,
) -> tuple[Message, list[Field] | None]:
    """(the message without the auth headers it may not keep, the auth headers to add);
    None to add: the message keeps those it came with (from an Exchange server)."""
    already = message.first("X-MS-Exchange-Organization-AuthAs")
    if already is not None and Right.ACCEPT_HEADERS_ORGANIZATION in rights:
        return message, None
    if auth_as == "Anonymous" and already == "Anonymous":
        source = message.first("X-MS-Exchange-Organization-AuthSource") or source
    stripped = message.without(AUTH_HEADERS)
    stamped = [
        make_field("X-MS-Exchange-Organization-AuthSource", source),
        make_field("X-MS-Exchange-Organization-AuthAs", auth_as),
    ]
    if auth_as != "Anonymous":
        stamped.append(make_field("X-MS-Exchange-Organization-AuthMechanism", mechanism))
        if auth_domain and auth_as != "Internal":
            stamped.append(make_field("X-MS-Exchange-Organization-AuthDomain", auth_domain))
    if auth_as == "Partner":
        # The Domain Secured mark of mail from a Domain Security partner (exchange.md §4.2).
        stripped = stripped.without((CLASSIFICATION.lower().encode(),))
        stamped.append(make_field(CLASSIFICATION, PARTNER_CLASSIFICATION))
    return stripped, stamped


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the hub stamps on a message it accepts (exchange.md §12.2)."""

    sender: str  # the envelope sender, "" for the null sender
    network_message_id: str  # used when the message carries none
    message_id: str | None  # a Message-ID to add (the message has none), else None
    auth_as: str
    mechanism: str
    auth_source: str  # the FQDN of the server that took the message from the client
    auth_domain: str | None
    bypass_anti_spam: bool  # the client held ms-Exch-Bypass-Anti-Spam: SCL -1


def stamp_arrival(message: Message, rights: Rights, arrival: Arrival) -> Message:
    """The hub's headers after the message's own, in the order of exchange.md §12.2.

    ``[Message-ID]``, ``Return-Path: <sender>`` (any Return-Path the message had is removed),
    ``X-MS-Exchange-Organization-Network-Message-Id``, then for an anonymous message
    ``AVStamp-Enterprise: 1.0``, ``[SCL: -1]``, ``AuthSource``, ``AuthAs``, and for any other
    the authentication headers first, then AVStamp and SCL. Organization headers a trusted
    session brought (``rights`` with Accept-Headers-Organization) are kept, not stamped twice.
    """
    base = message.without((b"return-path",))
    base, auth = _authentication(base, rights, arrival.auth_as, arrival.mechanism,
                                 arrival.auth_source, arrival.auth_domain)
    head: list[Field] = []
    if arrival.message_id is not None:
        head.append(make_field("Message-ID", arrival.message_id))
    head.append(make_field("Return-Path", arrival.sender or "<>"))
    if base.first(NETWORK_MESSAGE_ID) is None:
        head.append(make_field(NETWORK_MESSAGE_ID, arrival.network_message_id))
    scan: list[Field] = []
    if base.first(AV_STAMP) is None:
        scan.append(make_field(AV_STAMP, "1.0"))
    if arrival.bypass_anti_spam and base.first(SCL) is None:
        scan.append(make_field(SCL, "-1"))
    auth = auth or []
    tail = [*scan, *auth] if arrival.auth_as == "Anonymous" else [*auth, *scan]
    return Message((*base.fields, *head, *tail), base.body, base.has_separator)


_TICKS_AT_UNIX_EPOCH = 621_355_968_000_000_000  # .NET DateTime ticks (100 ns) at 1970-01-01
_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def network_message_id(now: datetime.datetime, random: bytes) -> str:
    """An ``X-MS-Exchange-Organization-Network-Message-Id`` as Exchange makes them: a GUID
    whose last 12 hex digits are the top 48 bits of the .NET ticks of ``now`` (UTC), the rest
    random with the version digit 4 (exchange.md §12.2). ``random``: 16 random bytes."""
    micros = (now - _UNIX_EPOCH) // datetime.timedelta(microseconds=1)
    stamp = ((_TICKS_AT_UNIX_EPOCH + micros * 10) >> 16) & (2**48 - 1)
    head = random.hex()
    return f"{head[:8]}-{head[8:12]}-4{head[13:16]}-{head[16:20]}-{stamp:012x}"


def network_message_time(value: str) -> datetime.datetime | None:
    """When a Network-Message-Id of :func:`network_message_id`'s form was made (UTC, to 6.6
    ms), or None if ``value`` is not a GUID."""
    if not _GUID.fullmatch(value.strip()):
        return None
    ticks = int(value.strip()[-12:], 16) << 16
    micros = (ticks - _TICKS_AT_UNIX_EPOCH) // 10
    return _UNIX_EPOCH + datetime.timedelta(microseconds=micros)


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def end_to_end_latency(seconds: float) -> str:
    """``hh:mm:ss.fffffff``, a .NET TimeSpan's text (exchange.md §12.2)."""
    ticks = max(0, round(seconds * 10_000_000))
    whole, fraction = divmod(ticks, 10_000_000)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{days}.{hours:02d}:{minutes:02d}:{secs:02d}.{fraction:07d}"
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{fraction:07d}"


def received_field(
    *,
    from_name: str,
    from_ip: str,
    by_name: str,
    by_ip: str,
    build: str,
    now: datetime.datetime,
    tls: tuple[str, str] | None = None,
    tls_2013: bool = False,
    via: str | None = None,
) -> Field:
    """``Received: from <name> (<ip>) by <name> (<ip>) with Microsoft SMTP Server ...``.

    The format of exchange.md §12.1: ``tls`` is (protocol, cipher) in Exchange's spelling,
    e.g. ("TLS1_2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"), written
    ``(version=TLS1_2, cipher=...)``, or ``(TLS)`` by 2013 (``tls_2013``); ``via`` adds
    `` via Frontend Transport``. An IPv6 address is bracketed. The field is folded as Exchange
    folds it: at spaces, each line as long as it can be within 78 characters.
    """
    from exchsim.policy.replies import rfc2822_date

    sender = f"[{from_ip}]" if ":" in from_ip else from_ip
    server = f"[{by_ip}]" if ":" in by_ip else by_ip
    tls_part = ""
    if tls:
        tls_part = " (TLS)" if tls_2013 else f" (version={tls[0]}, cipher={tls[1]})"
    via_part = f" via {via}" if via else ""
    value = (f"from {from_name or sender} ({sender}) by {by_name} ({server}) with Microsoft SMTP"
             f" Server{tls_part} id {build}{via_part}; {rfc2822_date(now)}")
    return Field(b"Received", fold("Received", value).encode())


def fold(name: str, value: str, width: int = 78) -> str:
    """``name: value`` CRLF, folded at spaces into lines of at most ``width`` characters
    where the words allow (a longer word stands alone on its line), as Exchange folds the
    Received lines it writes (exchange.md §12.1)."""
    lines: list[str] = []
    line = f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > width and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def tls_names(protocol: str | None, cipher: str | None) -> tuple[str, str] | None:
    """Python's ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384") in Exchange's spelling."""
    return schannel.tls_names(protocol, cipher)
