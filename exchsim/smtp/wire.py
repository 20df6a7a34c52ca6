"""Byte-level pieces of the SMTP wire that exchsim owns (pure, no I/O).

DATA framing (RFC 5321 §4.1.1.4, §4.5.2) and line-ending hygiene: only ``CRLF . CRLF`` ends a
message. A bare LF or bare CR inside the data never ends it (SMTP smuggling, reference
peers.md §4.1) and is rewritten to CRLF before the message is stored or relayed, so exchsim is
never the server that forwards a malformed line ending to the next hop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def normalize_line_endings(data: bytes) -> tuple[bytes, bool]:
    """Rewrite every bare CR and bare LF to CRLF. Returns (data, whether any was found)."""
    pairs = data.count(b"\r\n")
    if data.count(b"\r") == pairs and data.count(b"\n") == pairs:  # fast path: CRLF only
        return data, False
    fixed, count = _BARE.subn(b"\r\n", data)
    return fixed, count > 0


@dataclass(slots=True)
class DataReader:
    """Feeds DATA lines (each ending in CRLF as read) and collects the message.

    ``feed(line)`` returns True when the line is the terminating ``.`` line. Dot-stuffing is
    undone. The collected size is counted as received (before normalisation).
    """

    limit: int | None = None
    size: int = 0
    overflow: bool = False
    _parts: list[bytes] = field(default_factory=list)

    def feed(self, line: bytes) -> bool:
        if line == b".\r\n":
            return True
        if line.startswith(b"."):
            line = line[1:]
        self.size += len(line)
        if self.limit is not None and self.size > self.limit:
            self.overflow = True
            self._parts.clear()
        elif not self.overflow:
            self._parts.append(line)
        return False

    def message(self) -> bytes:
        return b"".join(self._parts)


def parse_bdat(arg: str | None) -> tuple[int, bool] | None:
    """``BDAT <size> [LAST]`` -> (size, last); None when the arguments are wrong."""
    parts = (arg or "").split()
    if not parts or len(parts) > 2 or not parts[0].isdigit():
        return None
    if len(parts) == 2 and parts[1].upper() != "LAST":
        return None
    return int(parts[0]), len(parts) == 2


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
