"""Byte-level pieces of the SMTP wire that exchsim owns (pure, no I/O).

DATA framing (RFC 5321 §4.1.1.4, §4.5.2) and line-ending hygiene: only ``CRLF . CRLF`` ends a
message. A bare LF or bare CR inside the data never ends it (SMTP smuggling, security.md §1)
and is rewritten to CRLF before the message is stored or relayed, so exchsim is
never the server that forwards a malformed line ending to the next hop.
"""

from __future__ import annotations

import re

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def normalize_line_endings(data: bytes) -> tuple[bytes, bool]:
    """Rewrite every bare CR and bare LF to CRLF. Returns (data, whether any was found)."""
    pairs = data.count(b"\r\n")
    if data.count(b"\r") == pairs and data.count(b"\n") == pairs:  # fast path: CRLF only
        return data, False
    fixed, count = _BARE.subn(b"\r\n", data)
    return fixed, count > 0


class DataCollector:
    """Collects a DATA message from the bytes as they come, in pieces of any size.

    :meth:`feed` takes the next bytes and returns how many of them belonged to the message when
    they held its end (``CRLF . CRLF``, or ``. CRLF`` as the first line), else None (all taken).
    Dot-stuffing is undone. ``size`` counts the message as received (before normalisation);
    past ``limit`` the collector keeps only what it needs to find the end (``overflow``).
    """

    __slots__ = ("_raw", "limit", "overflow")

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.overflow = False
        self._raw = bytearray(b"\r\n")  # a CRLF in front: the first line is a line like any

    def feed(self, data: bytes | bytearray) -> int | None:
        raw = self._raw
        before = len(raw)
        raw += data
        end = raw.find(b"\r\n.\r\n", max(before - 4, 0))
        if end >= 0:
            used = end + 5 - before
            del raw[end + 2 :]
            self._check_size(0)
            return used
        self._check_size(1 if raw.endswith(b"\r\n.\r") else 0)  # that CR may end it yet
        if self.overflow:
            del raw[: max(len(raw) - 4, 0)]  # enough to see an end split across pieces
        return None

    def _check_size(self, pending: int) -> None:
        raw = self._raw
        if self.limit is None or self.overflow or len(raw) - 2 - pending <= self.limit:
            return  # (the raw length is never below the size)
        if len(raw) - 2 - raw.count(b"\r\n.") - pending > self.limit:
            self.overflow = True

    @property
    def held(self) -> int:
        """Bytes kept so far: the message, or after an overflow no more than the last four."""
        return len(self._raw)

    def message(self) -> bytes:
        """The message after :meth:`feed` found its end (empty after an overflow)."""
        if self.overflow:
            return b""
        return bytes(self._raw).replace(b"\r\n.", b"\r\n")[2:]


def xtext_decode(value: str) -> str:
    """RFC 3461 xtext: ``+HH`` escapes; the bytes are UTF-8 (exchsim's choice for non-ASCII)."""
    out = bytearray()
    i = 0
    raw = value.encode("utf-8", "surrogateescape")
    while i < len(raw):
        if raw[i : i + 1] == b"+" and re.fullmatch(rb"[0-9A-Fa-f]{2}", raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "replace")


def xtext_encode(value: str) -> str:
    return "".join(
        chr(b) if 33 <= b <= 126 and b not in (0x2B, 0x3D) else f"+{b:02X}"
        for b in value.encode("utf-8", "surrogatepass")
    )


def parse_keyword_args(arg: str | None) -> dict[str, str]:
    """``SID=1 IP=1.2.3.4 DOMAIN=x`` -> {"SID": "1", ...} (keys upper-cased)."""
    out: dict[str, str] = {}
    for token in (arg or "").split():
        key, _, value = token.partition("=")
        out[key.upper()] = value
    return out
