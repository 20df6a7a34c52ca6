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


def stamp_authentication(
    message: Message,
    *,
    rights: Rights,
    auth_as: str,
    mechanism: str,
    server_fqdn: str,
    auth_domain: str | None = None,
) -> Message:
    """Re-evaluate the authentication headers (exchange.md §5.2).

    A message from a session that may send organization headers and already carries AuthAs
    is left as it is (it came from another Exchange server). Otherwise the auth headers are
    removed and stamped anew; an anonymous message keeps its earlier AuthSource when it is
    still there and already said Anonymous.
    """
    already = message.first("X-MS-Exchange-Organization-AuthAs")
    if already is not None and Right.ACCEPT_HEADERS_ORGANIZATION in rights:
        return message
    source = server_fqdn
    if auth_as == "Anonymous" and already == "Anonymous":
        source = message.first("X-MS-Exchange-Organization-AuthSource") or server_fqdn
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
    return Message((*stripped.fields, *stamped), stripped.body, stripped.has_separator)


def received_field(
    *,
    helo: str,
    client_ip: str,
    server_fqdn: str,
    server_ip: str,
    version_id: str,
    now: datetime.datetime,
    tls: tuple[str, str] | None = None,
    via: str | None = None,
) -> Field:
    """``Received: from <helo> (<ip>) by <fqdn> (<ip>) with Microsoft SMTP Server ...``.

    The format of exchange.md §5.4.

    ``tls`` is (protocol, cipher) in Exchange's spelling, e.g. ("TLS1_2",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"); ``via`` adds `` via Frontend Transport``.
    """
    from exchsim.policy.replies import rfc2822_date

    client = f"[{client_ip}]" if ":" in client_ip else client_ip
    server = f"[{server_ip}]" if ":" in server_ip else server_ip
    tls_part = f" (version={tls[0]}, cipher={tls[1]})" if tls else ""
    via_part = f" via {via}" if via else ""
    value = (
        f"from {helo or client} ({client}) by {server_fqdn} ({server})"
        f"\r\n with Microsoft SMTP Server{tls_part} id {version_id}{via_part};"
        f"\r\n {rfc2822_date(now)}"
    )
    return make_field("Received", value)


def tls_names(protocol: str | None, cipher: str | None) -> tuple[str, str] | None:
    """Python's ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384") in Exchange's spelling."""
    return schannel.tls_names(protocol, cipher)
