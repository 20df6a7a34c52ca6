"""The PROXY header parser (smtp/proxyheader.py) against HAProxy's proxy-protocol.txt.

Valid headers are built here from the specification's layout (section 2.1 for version 1, 2.2
for version 2); the real senders (HAProxy's send-proxy and send-proxy-v2) are exercised in
tests/integration/test_proxy_protocol.py.
"""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings, strategies as st

from exchsim.config.syntax import parse_ip_range
from exchsim.smtp.proxyheader import (
    MAX_HEADER,
    V1_MAX,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyListeners,
    parse,
)

SMTP = b"EHLO client.example\r\n"


def v2(command: int, fam: int, body: bytes, version: int = 2) -> bytes:
    return V2_SIGNATURE + bytes([version << 4 | command, fam]) + len(body).to_bytes(2, "big") + body


def v2_inet(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"",
            command: int = 1) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + tlvs
    return v2(command, fam, body)


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


# --- version 1 ----------------------------------------------------------------------------


def test_v1_tcp4() -> None:
    line = b"PROXY TCP4 203.0.113.77 127.0.10.1 56324 25\r\n"
    header = parse(line + SMTP)
    assert header == ProxyHeader(1, len(line), "TCP4", ("203.0.113.77", 56324),
                                 ("127.0.10.1", 25))


def test_v1_tcp6() -> None:
    line = b"PROXY TCP6 2001:DB8::77 2001:db8::1 0 65535\r\n"
    header = parse(line)
    assert header is not None
    assert header.source == ("2001:db8::77", 0)
    assert header.destination == ("2001:db8::1", 65535)


@pytest.mark.parametrize("line", [
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN 203.0.113.77 127.0.10.1 56324 25\r\n",
    b"PROXY UNKNOWN anything at all\r\n",
])
def test_v1_unknown_keeps_the_real_peer(line: bytes) -> None:
    header = parse(line + SMTP)
    assert header == ProxyHeader(1, len(line), "UNKNOWN", None, None)


def test_v1_longest_line_is_107_bytes() -> None:
    six = ":".join(["ffff"] * 8)
    line = f"PROXY UNKNOWN {six} {six} 65535 65535\r\n".encode()
    assert len(line) == V1_MAX == 107
    assert parse(line) is not None
    tcp6 = f"PROXY TCP6 {six} {six} 65535 65535\r\n".encode()
    assert parse(tcp6) is not None and len(tcp6) == 104


def test_v1_every_prefix_waits() -> None:
    line = b"PROXY TCP4 203.0.113.77 127.0.10.1 56324 25\r\n"
    for cut in range(len(line)):
        assert parse(line[:cut]) is None, line[:cut]


# --- version 2 ----------------------------------------------------------------------------


def test_v2_tcp4_with_tlvs() -> None:
    tlvs = (tlv(0x01, b"smtp") + tlv(0x02, b"mail.contoso.com") + tlv(0x04, b"")
            + tlv(0x05, b"u" * 128) + tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))
            + tlv(0xEA, b"\x01vpce-0123456789"))
    data = v2_inet("203.0.113.77", "127.0.10.1", 40000, 25, tlvs)
    header = parse(data + SMTP)
    assert header == ProxyHeader(2, len(data), "TCP4", ("203.0.113.77", 40000),
                                 ("127.0.10.1", 25))


def test_v2_tcp6() -> None:
    header = parse(v2_inet("2001:db8::77", "2001:db8::1", 1, 587))
    assert header is not None
    assert (header.kind, header.source) == ("TCP6", ("2001:db8::77", 1))


def test_v2_local_keeps_the_real_peer_and_skips_its_bytes() -> None:
    # LOCAL: addresses (even nonsense) and TLVs are skipped; the length says how far (proxy-protocol.txt, section 2.2).
    data = v2(0x0, 0x11, b"\xff" * 20)
    assert parse(data + SMTP) == ProxyHeader(2, 36, "LOCAL", None, None)
    assert parse(v2(0x0, 0x00, b"")) == ProxyHeader(2, 16, "LOCAL", None, None)


@pytest.mark.parametrize(("fam", "length", "kind"), [
    (0x00, 0, "UNSPEC"), (0x10, 12, "UNSPEC"), (0x01, 0, "UNSPEC"),
    (0x12, 12, "UDP4"), (0x22, 36, "UDP6"), (0x31, 216, "UNIX"), (0x32, 216, "UNIX-DGRAM"),
])
def test_v2_other_families_fall_back_to_the_real_peer(fam: int, length: int, kind: str) -> None:
    header = parse(v2(0x1, fam, b"\x01" * length))
    assert header == ProxyHeader(2, 16 + length, kind, None, None)


def test_v2_longest_accepted() -> None:
    filler = tlv(0x04, b"\x00" * (V2_MAX_LENGTH - 12 - 3))
    data = v2_inet("203.0.113.77", "127.0.10.1", 1, 25, filler)
    assert len(data) == MAX_HEADER
    assert parse(data) is not None


# --- random splits ------------------------------------------------------------------------

addresses4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
addresses6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
ports = st.integers(0, 65535)
tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=60)), max_size=8).map(
    lambda items: b"".join(tlv(k, v) for k, v in items))


@st.composite
def headers(draw: st.DrawFn) -> tuple[bytes, ProxyHeader]:
    family = draw(st.sampled_from([4, 6]))
    src, dst = draw(addresses4 if family == 4 else addresses6), draw(
        addresses4 if family == 4 else addresses6)
    sport, dport = draw(ports), draw(ports)
    kind = f"TCP{family}"
    if draw(st.booleans()):
        data = f"PROXY {kind} {src} {dst} {sport} {dport}\r\n".encode()
        return data, ProxyHeader(1, len(data), kind, (src, sport), (dst, dport))
    data = v2_inet(src, dst, sport, dport, draw(tlvs))
    return data, ProxyHeader(2, len(data), kind, (src, sport), (dst, dport))


@settings(max_examples=300, deadline=None)
@given(headers(), st.binary(max_size=40), st.data())
def test_random_splits(case: tuple[bytes, ProxyHeader], after: bytes, data: st.DataObject) -> None:
    header_bytes, expected = case
    stream = header_bytes + after
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    received = b""
    found = None
    for cut in [*sorted(set(cuts)), len(stream)]:
        received = stream[:cut]
        found = parse(received)
        if found is not None:
            break
    assert found == expected
    assert len(received) >= expected.size
    assert received[expected.size:] == stream[expected.size:len(received)]


# --- every malformed form -----------------------------------------------------------------

MALFORMED_V1 = [
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # a lone LF
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx\n",  # a lone CR
    b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
    b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",  # two spaces
    b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",  # a trailing space
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",  # a field missing
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",  # a leading zero
    b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 ::1 ::1 1 2\r\n",  # the other family
    b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n",  # dotted quad in TCP6
    b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
    b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n",  # not ASCII
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n",
    b"PROXY \r\n",
    b"PROXY\r\n",
    b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",  # no CRLF in the first 107 bytes
    b"PROXY TCP4 " + b"1" * 200,
]
MALFORMED_OTHER = [
    b"EHLO client.example\r\n",  # a plain SMTP client that speaks first
    b"GET / HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    b"\r\n\r\n\x00\r\nQUIT\r" + b"\x21\x11\x00\x0c" + b"\x00" * 12,  # signature off by one
    V2_SIGNATURE[:5] + b"X",
]
MALFORMED_V2 = [
    v2(0x1, 0x11, b"\x00" * 12, version=1),
    v2(0x1, 0x11, b"\x00" * 12, version=3),
    v2(0x2, 0x11, b"\x00" * 12),  # command 2
    v2(0xF, 0x11, b"\x00" * 12),
    v2(0x1, 0x41, b"\x00" * 12),  # family 4
    v2(0x1, 0x13, b"\x00" * 12),  # protocol 3
    v2(0x1, 0x11, b"\x00" * 8),  # too short for IPv4's block
    v2(0x1, 0x21, b"\x00" * 20),  # too short for IPv6's
    v2(0x1, 0x31, b"\x00" * 100),  # too short for UNIX's
    v2_inet("1.2.3.4", "5.6.7.8", 1, 2, b"\x01\x00"),  # a TLV cut short
    v2_inet("1.2.3.4", "5.6.7.8", 1, 2, tlv(0x02, b"abc")[:-1]),
    v2_inet("1.2.3.4", "5.6.7.8", 1, 2, b"\x02\x00\x09abc"),  # a TLV past the end
    V2_SIGNATURE + b"\x21\x11" + (V2_MAX_LENGTH + 1).to_bytes(2, "big"),  # over the bound
    V2_SIGNATURE + b"\x21\x11\xff\xff",
]


@pytest.mark.parametrize("data", MALFORMED_V1 + MALFORMED_OTHER + MALFORMED_V2)
def test_malformed_is_refused_and_never_parsed(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError) as caught:
        parse(data + SMTP)
    assert len(str(caught.value)) < 300  # what the log quotes is bounded
    for cut in range(len(data)):  # no prefix gives a header; each waits or refuses
        with contextlib.suppress(ProxyHeaderError):
            assert parse(data[:cut]) is None


def test_refused_before_it_could_end() -> None:
    # Detected from the first bytes that cannot begin a header, without waiting for more.
    for prefix in (b"E", b"PROXX", b"\r\n\r\n\x01", b"PROXY TCP4 1.2.3.4\n", b"\x16"):
        with pytest.raises(ProxyHeaderError):
            parse(prefix)
    with pytest.raises(ProxyHeaderError):  # the bound, before the body arrives
        parse(V2_SIGNATURE + b"\x21\x11\x08\x01")
    with pytest.raises(ProxyHeaderError):
        parse(b"PROXY UNKNOWN " + b"x" * (V1_MAX - 14))


# --- who may send one ---------------------------------------------------------------------


def test_listeners() -> None:
    listeners = ProxyListeners(frozenset({25}),
                               (parse_ip_range("127.0.10.90"), parse_ip_range("10.0.0.0/8"),
                                parse_ip_range("fd00::/64")), 5.0)
    assert listeners.expects(25) and not listeners.expects(587)
    assert listeners.trusts("127.0.10.90")
    assert listeners.trusts("::ffff:127.0.10.90")  # a dual-stack socket's view of it
    assert listeners.trusts("10.200.1.2") and listeners.trusts("fd00::5")
    assert not listeners.trusts("127.0.10.91") and not listeners.trusts("fd01::5")
