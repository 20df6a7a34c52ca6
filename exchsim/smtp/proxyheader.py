"""The PROXY protocol header, versions 1 and 2, parsed without I/O; and who may send one.

exchsim's own feature, not Exchange's (Exchange has no PROXY protocol, exchange.md §3.5): a
load balancer or TCP proxy in front of the lab prepends, before any SMTP byte, a header that
names the client it relays for (HAProxy's specification, "The PROXY protocol, Versions 1 & 2",
revision 2020/03/05, sections 2.1 and 2.2: ``doc/proxy-protocol.txt`` of the HAProxy sources,
https://www.haproxy.org/download/2.1/doc/proxy-protocol.txt). The server's
``ExchsimProxyProtocol`` key (config/proxy.py) says on which ports and from which addresses.

:func:`parse` takes the bytes received so far, in any pieces, and says: not complete yet
(``None``), the header (:class:`ProxyHeader`, with how many bytes it took: what follows is the
client's SMTP), or :class:`ProxyHeaderError` as soon as the bytes cannot begin a valid header.

Version 1, one line of printable US-ASCII ending in CRLF, at most 107 bytes:
``PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>\\r\\n`` with single
spaces, canonical addresses of the named family (IPv4 without leading zeros, IPv6 in hex and
colons) and ports 0-65535 without leading zeros; or ``PROXY UNKNOWN`` and anything up to the
CRLF (the real connection's endpoints are kept). A lone CR or LF, a byte outside 0x20-0x7E or
no CRLF in the first 107 bytes is an error.

Version 2: the 12-byte signature ``\\r\\n\\r\\n\\0\\r\\nQUIT\\n``, the version (2) and command
byte, the family and protocol byte, a 2-byte length, then that many bytes: the addresses and
ports of the family, then TLVs. Command LOCAL (a proxy's own connection, a health check) keeps
the real endpoints and ignores the rest; PROXY with TCP over IPv4 (``0x11``) or IPv6 (``0x21``)
gives the client; the other valid combinations (UNSPEC, UDP, UNIX) fall back to the real
endpoints, as the specification lets a receiver do. An unknown version, command, family or
protocol, an address block shorter than its family needs, a TLV that runs past the end or a
length over :data:`V2_MAX_LENGTH` is an error. TLVs are checked for their framing and skipped
(the CRC32C TLV is not verified: the specification requires it only of a receiver that supports
it).

:class:`ProxyListeners` is a server's ``ExchsimProxyProtocol`` as the adapter asks it: does
this port expect a header, is this peer a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from exchsim.config.model import Server
from exchsim.config.syntax import IPRange

__all__ = [
    "V1_MAX",
    "V2_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyListeners",
    "parse",
]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
#: "PROXY UNKNOWN <39> <39> 65535 65535\r\n", the longest line (proxy-protocol.txt, section 2.1)
V1_MAX = 107
#: The longest version 2 address block and TLVs exchsim takes. The specification allows 65,535
#: bytes; the addresses take at most 216 (UNIX) and the TLVs proxies send (ALPN, authority, SSL
#: facts, a unique id of up to 128 bytes, a cloud's endpoint id) a few hundred.
V2_MAX_LENGTH = 2048
MAX_HEADER = 16 + V2_MAX_LENGTH  # the most any header may take

_V1_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
_V1_IPV4 = re.compile(rb"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_V1_IPV6 = re.compile(rb"[0-9A-Fa-f:]{2,39}")
#: family -> address block size (proxy-protocol.txt, section 2.2)
_V2_ADDRESSES = {1: 12, 2: 36, 3: 216}
_SHOWN = 32  # bytes of the offending input an error message quotes, at most


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY header; the message says why, in bounded length."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int  # 1 or 2
    size: int  # bytes the header took
    kind: str  # TCP4, TCP6, UNKNOWN (v1); TCP4, TCP6, LOCAL, UNSPEC, UDP4, UDP6, UNIX... (v2)
    source: tuple[str, int] | None  # the client; None: keep the real connection's peer
    destination: tuple[str, int] | None  # what the client connected to (the proxy's side)


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; ``None`` while it may still complete."""
    if not data:
        return None
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data)
    if data[0] == V1_PREFIX[0]:
        return _parse_v1(data)
    raise ProxyHeaderError(f"neither a version 1 nor a version 2 header: {_show(data)}")


def _show(data: bytes) -> str:
    text = repr(bytes(data[:_SHOWN]))
    return text + ("..." if len(data) > _SHOWN else "")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    head = data[:len(V1_PREFIX)]
    if head != V1_PREFIX[:len(head)]:
        raise ProxyHeaderError(f"a version 1 header starts with 'PROXY ': {_show(data)}")
    window = data[:V1_MAX]
    end = window.find(b"\r\n")
    line = window if end < 0 else window[:end]
    for i, byte in enumerate(line):
        if not 0x20 <= byte <= 0x7E:
            if byte == 0x0D and i == len(line) - 1 and end < 0 and len(data) == i + 1:
                break  # a CR at the very end: its LF may come next
            raise ProxyHeaderError(f"version 1 header: byte {byte:#04x} at offset {i} "
                                   f"(only printable ASCII, ended by CRLF): {_show(data)}")
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"version 1 header: no CRLF in the first {V1_MAX} bytes")
        return None
    size = end + 2
    fields = line.split(b" ")
    if fields[1] == b"UNKNOWN":  # the rest of the line is ignored (proxy-protocol.txt, section 2.1)
        return ProxyHeader(1, size, "UNKNOWN", None, None)
    if fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError(f"version 1 header: protocol {_show(fields[1])} is not TCP4, "
                               "TCP6 or UNKNOWN")
    if len(fields) != 6:
        raise ProxyHeaderError(f"version 1 header: {_show(line)} is not 'PROXY <protocol> "
                               "<source> <destination> <source port> <destination port>' "
                               "with single spaces")
    version = 4 if fields[1] == b"TCP4" else 6
    source = _v1_address(fields[2], version)
    destination = _v1_address(fields[3], version)
    sport, dport = _v1_port(fields[4]), _v1_port(fields[5])
    return ProxyHeader(1, size, fields[1].decode(), (source, sport), (destination, dport))


def _v1_address(text: bytes, version: int) -> str:
    pattern = _V1_IPV4 if version == 4 else _V1_IPV6
    try:
        if pattern.fullmatch(text) is None:
            raise ValueError
        address = ipaddress.ip_address(text.decode("ascii"))
        if address.version != version:
            raise ValueError
    except ValueError:
        raise ProxyHeaderError(f"version 1 header: {_show(text)} is not a canonical IPv"
                               f"{version} address") from None
    return str(address)


def _v1_port(text: bytes) -> int:
    if _V1_PORT.fullmatch(text) is None or int(text) > 65535:
        raise ProxyHeaderError(f"version 1 header: port {_show(text)} is not 0 to 65535 "
                               "without leading zeros")
    return int(text)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    head = data[:len(V2_SIGNATURE)]
    if head != V2_SIGNATURE[:len(head)]:
        raise ProxyHeaderError(f"not the version 2 signature: {_show(data)}")
    if len(data) < 16:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    family, protocol = data[13] >> 4, data[13] & 0x0F
    length = int.from_bytes(data[14:16], "big")
    if version != 2:
        raise ProxyHeaderError(f"version 2 header: version {version} (only 2 exists)")
    if command > 1:
        raise ProxyHeaderError(f"version 2 header: command {command:#x} (LOCAL 0 or PROXY 1)")
    if family > 3 or protocol > 2:
        raise ProxyHeaderError(f"version 2 header: family and protocol byte {data[13]:#04x} "
                               "(family 0-3, protocol 0-2)")
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"version 2 header: {length} bytes of addresses and TLVs "
                               f"(exchsim takes at most {V2_MAX_LENGTH})")
    size = 16 + length
    if len(data) < size:
        return None
    body = data[16:size]
    if command == 0:  # LOCAL: the proxy's own connection; everything after byte 16 ignored
        return ProxyHeader(2, size, "LOCAL", None, None)
    if family == 0 or protocol == 0:
        return ProxyHeader(2, size, "UNSPEC", None, None)
    needed = _V2_ADDRESSES[family]
    if length < needed:
        raise ProxyHeaderError(f"version 2 header: {length} bytes cannot hold the "
                               f"{needed}-byte address block of family {family}")
    _check_tlvs(body[needed:])
    kind = {1: "TCP4", 2: "TCP6", 3: "UNIX"}[family]
    if protocol == 2:
        kind = {1: "UDP4", 2: "UDP6", 3: "UNIX-DGRAM"}[family]
    # Not a TCP client: the real endpoints (proxy-protocol.txt, section 2.2).
    if family == 3 or protocol == 2:
        return ProxyHeader(2, size, kind, None, None)
    width = 4 if family == 1 else 16
    src = ipaddress.ip_address(body[:width])
    dst = ipaddress.ip_address(body[width:2 * width])
    ports = body[2 * width:2 * width + 4]
    return ProxyHeader(2, size, kind,
                       (str(src), int.from_bytes(ports[:2], "big")),
                       (str(dst), int.from_bytes(ports[2:], "big")))


def _check_tlvs(tlvs: bytes) -> None:
    at = 0
    while at < len(tlvs):
        if len(tlvs) - at < 3:
            raise ProxyHeaderError(f"version 2 header: {len(tlvs) - at} bytes at the end are "
                                   "too few for a TLV (type and 2-byte length)")
        length = int.from_bytes(tlvs[at + 1:at + 3], "big")
        if at + 3 + length > len(tlvs):
            raise ProxyHeaderError(f"version 2 header: TLV type {tlvs[at]:#04x} of {length} "
                                   "bytes runs past the header's end")
        at += 3 + length


@dataclass(frozen=True, slots=True)
class ProxyListeners:
    """A server's ``ExchsimProxyProtocol``: the ports that expect a header, and from whom."""

    ports: frozenset[int]
    trusted: tuple[IPRange, ...]
    timeout: float  # seconds a trusted proxy has to send the whole header

    @classmethod
    def of(cls, server: Server) -> ProxyListeners | None:
        proxy = server.exchsim_proxy_protocol
        if proxy is None:
            return None
        return cls(frozenset(proxy.ports), proxy.trusted_proxies,
                   proxy.header_timeout.total_seconds())

    def expects(self, port: int) -> bool:
        """A connection to ``port`` (as configured) must start with a PROXY header."""
        return port in self.ports

    def trusts(self, peer: str) -> bool:
        address = ipaddress.ip_address(peer)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(r.contains(address) for r in self.trusted)
