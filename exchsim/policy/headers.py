"""The header firewall, authentication stamping and Received headers (exchange.md §5).

Messages are bytes with CRLF line endings. The header block is split into fields, each kept
as its raw bytes (folded continuation lines included) so that what is not changed goes on
byte for byte.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from exchsim.policy.permissions import Right, Rights

ORG_PREFIX = b"x-ms-exchange-organization-"
FOREST_PREFIX = b"x-ms-exchange-forest-"
NETWORK_MESSAGE_ID = "X-MS-Exchange-Organization-Network-Message-Id"
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
    body: bytes  # everything after the blank line (the blank line itself not included)
    has_separator: bool = True

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
        head = b"".join(f.raw for f in self.fields)
        if self.has_separator:
            return head + b"\r\n" + self.body
        return head + self.body

    def prepend(self, *new: Field) -> Message:
        return Message((*new, *self.fields), self.body, self.has_separator)

    def without(self, keys: Sequence[bytes]) -> Message:
        drop = set(keys)
        return Message(
            tuple(f for f in self.fields if f.key not in drop), self.body, self.has_separator
        )


def parse_message(data: bytes) -> Message:
    """Split a CRLF message into header fields and body; tolerant of junk lines."""
    fields: list[Field] = []
    pos = 0
    current: list[bytes] = []
    current_name = b""
    n = len(data)
    while pos < n:
        end = data.find(b"\r\n", pos)
        line = data[pos:] if end < 0 else data[pos : end + 2]
        next_pos = n if end < 0 else end + 2
        if line in (b"\r\n", b""):
            if current:
                fields.append(Field(current_name, b"".join(current)))
            return Message(tuple(fields), data[next_pos:], True)
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
        else:
            name, sep, _ = line.partition(b":")
            if not sep or not name or b" " in name.strip() or name != name.rstrip(b" \t"):
                # Not a header line: the header block ended without a blank line.
                if current:
                    fields.append(Field(current_name, b"".join(current)))
                return Message(tuple(fields), data[pos:], False)
            if current:
                fields.append(Field(current_name, b"".join(current)))
            current, current_name = [line if line.endswith(b"\r\n") else line + b"\r\n"], name
        pos = next_pos
    if current:
        fields.append(Field(current_name, b"".join(current)))
    return Message(tuple(fields), b"", False)


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
    if not protocol:
        return None
    proto = protocol.replace("TLSv", "TLS").replace(".", "_")
    name = (cipher or "").upper()
    iana = _CIPHERS.get(name, name.replace("-", "_"))
    return proto, iana


_CIPHERS = {
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
