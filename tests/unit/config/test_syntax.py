"""Exchange's parameter mini-syntaxes: sizes, limits, timespans, IP ranges, bindings."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from hypothesis import given, strategies as st

from exchsim.config.syntax import (
    MAX_TIMESPAN,
    Address,
    Binding,
    IPRange,
    format_byte_size,
    format_ip_range,
    format_timespan,
    parse_address,
    parse_binding,
    parse_byte_size,
    parse_count,
    parse_ip_range,
    parse_limit,
    parse_timespan,
)

KB, MB, GB, TB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
V4_ALL = (1 << 32) - 1
V6_ALL = (1 << 128) - 1

# --- byte sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (65536, 65536),
        ("65536", 65536),
        ("65536B", 65536),
        ("65536 b", 65536),
        ("36MB", 36 * MB),
        ("36 MB", 36 * MB),
        ("36 mb", 36 * MB),
        ("  36 Mb  ", 36 * MB),
        ("10KB", 10 * KB),
        ("10kb", 10 * KB),
        ("1.5 GB", 3 * GB // 2),
        ("2TB", 2 * TB),
        ("0 KB", 0),
        ("36 MB (37,748,736 bytes)", 37_748_736),
        ("36MB(37,748,736 bytes)", 37_748_736),
        ("256 KB (262,144 bytes)", 262_144),
        ("512 B (512 bytes)", 512),
        ("1 B (1 byte)", 1),
        ("36 MB (37748736 bytes)", 37_748_736),
        ("36 MB ( 37,748,737 BYTES )", 37_748_737),
        # The parenthesised byte count wins over the rounded display number.
        ("36 MB (37,748,999 bytes)", 37_748_999),
        # Fractional bytes round down.
        ("1.5", 1),
        ("1.9 B", 1),
        ("0.001 KB", 1),
        ("0.0001 KB", 0),
        ("1.0009765625 KB", 1025),
        ("99999999999 TB", 99_999_999_999 * TB),
    ],
)
def test_parse_byte_size(value: str | int, expected: int) -> None:
    assert parse_byte_size(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "MB",
        "-1",
        "-36MB",
        -1,
        True,
        False,
        "36 M",
        "36 MiB",
        "36 PB",
        "36,000",
        "1.",
        ".5 MB",
        "1e3",
        "36 MB MB",
        "36 MB (37,748,736)",
        "36 MB (37,748,736 bytes",
        "36 MB (37,74,8736 bytes)",
        "36 MB (-1 bytes)",
        "twelve parsecs",
        "12 parsecs",
        "٣٦MB",  # non-ASCII digits
        1.5,
        None,
    ],
)
def test_parse_byte_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="expected a size such as 36MB"):
        parse_byte_size(value)  # type: ignore[arg-type]


def test_parse_byte_size_negative_message_says_why() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_byte_size(-5)
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_byte_size("-5 KB")


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (37_748_736, "36 MB (37,748,736 bytes)"),
        (37_748_737, "36 MB (37,748,737 bytes)"),
        (262_144, "256 KB (262,144 bytes)"),
        (10_485_760, "10 MB (10,485,760 bytes)"),
        (1_073_741_824, "1 GB (1,073,741,824 bytes)"),
        (512, "512 B (512 bytes)"),
        (0, "0 B (0 bytes)"),
        (1, "1 B (1 bytes)"),
        (1023, "1023 B (1,023 bytes)"),
        (1024, "1 KB (1,024 bytes)"),
        (1536, "1.5 KB (1,536 bytes)"),
        (1280, "1.25 KB (1,280 bytes)"),
        (1029, "1 KB (1,029 bytes)"),  # 1.0048828125 rounds to 1
        (1030, "1.01 KB (1,030 bytes)"),  # 1.005859375 rounds up
        (3 * GB // 2, "1.5 GB (1,610,612,736 bytes)"),
        (2_147_483_647, "2 GB (2,147,483,647 bytes)"),
        (5 * TB, "5 TB (5,497,558,138,880 bytes)"),
        (2048 * TB, "2048 TB (2,251,799,813,685,248 bytes)"),
    ],
)
def test_format_byte_size(n: int, expected: str) -> None:
    assert format_byte_size(n) == expected


def test_format_byte_size_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_byte_size(-1)


@given(st.integers(min_value=0, max_value=1 << 50))
def test_byte_size_round_trip(n: int) -> None:
    text = format_byte_size(n)
    assert parse_byte_size(text) == n
    # The display number alone is the value to within the 2-decimal rounding.
    number_and_unit = text.split(" (")[0]
    unit = number_and_unit.split(" ")[1]
    step = {"B": 1, "KB": KB, "MB": MB, "GB": GB, "TB": TB}[unit]
    assert abs(parse_byte_size(number_and_unit) - n) <= step // 200 + 1


@given(st.integers(min_value=0, max_value=1 << 50))
def test_byte_size_plain_forms(n: int) -> None:
    assert parse_byte_size(n) == n
    assert parse_byte_size(str(n)) == n
    assert parse_byte_size(f"{n}B") == n
    assert parse_byte_size(f"{n} KB") == n * KB


# --- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["unlimited", "Unlimited", "UNLIMITED", " unLimited "])
def test_parse_limit_unlimited(value: str) -> None:
    assert parse_limit(value) is None
    assert parse_limit(value, parse_byte_size) is None


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (5000, 5000), ("20", 20), (" 7 ", 7)])
def test_parse_limit_number(value: str | int, expected: int) -> None:
    assert parse_limit(value) == expected
    assert parse_count(value) == expected


def test_parse_limit_with_another_parser() -> None:
    assert parse_limit("36MB", parse_byte_size) == 36 * MB
    assert parse_limit(1024, parse_byte_size) == 1024


@pytest.mark.parametrize(
    "value", ["", "-1", -1, "1.5", "5k", "unlimit", "none", "+5", "1_000", "٥", True, 2.0, None]
)
def test_parse_limit_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"expected a whole number \(0 or more\), or Unlimited"):
        parse_limit(value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a whole number"):
        parse_count(value)  # type: ignore[arg-type]


def test_parse_limit_with_another_parser_names_both_choices() -> None:
    with pytest.raises(ValueError, match=r"expected a size such as 36MB.*, or Unlimited$"):
        parse_limit("lots", parse_byte_size)


# --- timespans ------------------------------------------------------------------------------

TD = datetime.timedelta


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("00:05:00", TD(minutes=5)),
        ("00:00:05", TD(seconds=5)),
        ("00:10:00", TD(minutes=10)),
        ("23:59:59", TD(hours=23, minutes=59, seconds=59)),
        ("1:02:03", TD(hours=1, minutes=2, seconds=3)),
        ("0:0:0", TD(0)),
        ("1.00:00:00", TD(days=1)),
        ("2.03:04:05", TD(days=2, hours=3, minutes=4, seconds=5)),
        ("10.00:00:00", TD(days=10)),
        ("00:00:00.5", TD(milliseconds=500)),
        ("00:00:00.123", TD(milliseconds=123)),
        ("00:00:00.1234567", TD(microseconds=123456)),  # 100 ns digit dropped
        ("00:00:00.0000001", TD(0)),
        ("1.00:00:01.25", TD(days=1, seconds=1, milliseconds=250)),
        (" 00:05:00 ", TD(minutes=5)),
        ("10675199.02:48:05.4775807", MAX_TIMESPAN),
        (0, TD(0)),
        (300, TD(minutes=5)),
        (36000, TD(hours=10)),  # what YAML 1.1 makes of an unquoted 10:00:00
        (0.5, TD(milliseconds=500)),
        (1.25, TD(seconds=1, milliseconds=250)),
    ],
)
def test_parse_timespan(value: str | float, expected: datetime.timedelta) -> None:
    assert parse_timespan(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "5",
        "05:00",
        "1.05:00",
        "00:05",
        "5 minutes",
        "00:05:00:00",
        "00-05-00",
        "1 00:00:00",
        "1:00:00:00",
        "00:00:00.",
        "00:00:00.12345678",
        "00:000:00",
        "123:00:00",
        "a.00:00:00",
        "P1D",
        "٠٠:٠٥:٠٠",
        True,
        None,
        [1],
    ],
)
def test_parse_timespan_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="expected a timespan such as 00:05:00"):
        parse_timespan(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("24:00:00", "hours must be 0 to 23"),
        ("1.24:00:00", "hours must be 0 to 23"),
        ("00:60:00", "minutes and seconds must be 0 to 59"),
        ("00:00:60", "minutes and seconds must be 0 to 59"),
        ("1.00:99:00", "minutes and seconds must be 0 to 59"),
        ("-00:05:00", "cannot be negative"),
        ("-1.00:00:00", "cannot be negative"),
        (-1, "cannot be negative"),
        (-0.5, "cannot be negative"),
        (float("nan"), "must be finite"),
        (float("inf"), "must be finite"),
        ("10675199.02:48:05.4775900", "at most 10675199.02:48:05.4775800"),
        ("99999999.00:00:00", "at most"),
        (10**15, "at most"),
    ],
)
def test_parse_timespan_rejects_with_reason(value: str | float, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_timespan(value)


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (TD(0), "00:00:00"),
        (TD(minutes=5), "00:05:00"),
        (TD(seconds=5), "00:00:05"),
        (TD(hours=10), "10:00:00"),
        (TD(days=1), "1.00:00:00"),
        (TD(days=12, hours=3, minutes=4, seconds=5), "12.03:04:05"),
        (TD(milliseconds=500), "00:00:00.5000000"),
        (TD(microseconds=1), "00:00:00.0000010"),
        (TD(days=1, seconds=1, microseconds=123456), "1.00:00:01.1234560"),
    ],
)
def test_format_timespan(td: datetime.timedelta, expected: str) -> None:
    assert format_timespan(td) == expected


def test_format_timespan_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_timespan(TD(seconds=-1))


@given(st.timedeltas(min_value=TD(0), max_value=MAX_TIMESPAN))
def test_timespan_round_trip(td: datetime.timedelta) -> None:
    text = format_timespan(td)
    assert parse_timespan(text) == td
    assert format_timespan(parse_timespan(text)) == text
    assert ("." in text.split(":")[-1]) == bool(td.microseconds)


@given(st.integers(min_value=0, max_value=10**9))
def test_timespan_seconds(seconds: int) -> None:
    assert parse_timespan(seconds) == TD(seconds=seconds)
    assert parse_timespan(format_timespan(TD(seconds=seconds))) == TD(seconds=seconds)


# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ipaddress.IPv4Address("127.0.0.1")),
        (" 10.1.2.3 ", ipaddress.IPv4Address("10.1.2.3")),
        ("::1", ipaddress.IPv6Address("::1")),
        ("[::1]", ipaddress.IPv6Address("::1")),
        ("[127.0.0.1]", ipaddress.IPv4Address("127.0.0.1")),
        ("fe80::1%13", ipaddress.IPv6Address("fe80::1")),
        ("[fe80::39bd:88f7:6969:d223%11]", ipaddress.IPv6Address("fe80::39bd:88f7:6969:d223")),
        ("FD00::ABCD", ipaddress.IPv6Address("fd00::abcd")),
        # IPv4-mapped stays IPv6: versions are kept apart.
        ("::ffff:127.0.0.1", ipaddress.IPv6Address("::ffff:127.0.0.1")),
    ],
)
def test_parse_address(text: str, expected: Address) -> None:
    got = parse_address(text)
    assert got == expected
    assert type(got) is type(expected)
    assert getattr(got, "scope_id", None) is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "localhost",
        "127.0.0.256",
        "127.0.0",
        "127.0.0.01",
        "1.2.3.4%5",
        "fe80::1%",
        "::1::2",
        "[::1",
        "::1]",
        "[[::1]]",
        "1.2.3.4/32",
        5,
    ],
)
def test_parse_address_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="expected an IP address"):
        parse_address(text)  # type: ignore[arg-type]


# --- IP ranges ------------------------------------------------------------------------------


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


@pytest.mark.parametrize(
    ("text", "first", "last", "version", "canonical"),
    [
        ("127.0.21.75", v4("127.0.21.75"), v4("127.0.21.75"), 4, "127.0.21.75"),
        ("::1", 1, 1, 6, "::1"),
        ("[::1]", 1, 1, 6, "::1"),
        (
            "fe80::39bd:88f7:6969:d223%11",
            v6("fe80::39bd:88f7:6969:d223"),
            v6("fe80::39bd:88f7:6969:d223"),
            6,
            "fe80::39bd:88f7:6969:d223",
        ),
        ("127.0.22.0/24", v4("127.0.22.0"), v4("127.0.22.255"), 4, "127.0.22.0/24"),
        ("127.0.22.77/24", v4("127.0.22.0"), v4("127.0.22.255"), 4, "127.0.22.0/24"),
        (" 10.0.0.0 / 8 ", v4("10.0.0.0"), v4("10.255.255.255"), 4, "10.0.0.0/8"),
        ("0.0.0.0/0", 0, V4_ALL, 4, "0.0.0.0/0"),
        ("1.2.3.4/32", v4("1.2.3.4"), v4("1.2.3.4"), 4, "1.2.3.4"),
        ("1.2.3.4/31", v4("1.2.3.4"), v4("1.2.3.5"), 4, "1.2.3.4/31"),
        ("fd00::/64", v6("fd00::"), v6("fd00::ffff:ffff:ffff:ffff"), 6, "fd00::/64"),
        ("FD00::1234/64", v6("fd00::"), v6("fd00::ffff:ffff:ffff:ffff"), 6, "fd00::/64"),
        (
            "2001:0DB8::CD3/60",
            v6("2001:db8::"),
            v6("2001:db8:0:f:ffff:ffff:ffff:ffff"),
            6,
            "2001:db8::/60",
        ),
        ("::/0", 0, V6_ALL, 6, "::/0"),
        ("::1/128", 1, 1, 6, "::1"),
        ("10.0.0.1-10.0.0.9", v4("10.0.0.1"), v4("10.0.0.9"), 4, "10.0.0.1-10.0.0.9"),
        ("10.0.0.1 - 10.0.0.9", v4("10.0.0.1"), v4("10.0.0.9"), 4, "10.0.0.1-10.0.0.9"),
        ("10.0.0.5-10.0.0.5", v4("10.0.0.5"), v4("10.0.0.5"), 4, "10.0.0.5"),
        # A range keeps its a-b form even when it is a CIDR block, as Exchange shows it.
        ("0.0.0.0-255.255.255.255", 0, V4_ALL, 4, "0.0.0.0-255.255.255.255"),
        (
            "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            0,
            V6_ALL,
            6,
            "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ),
        ("0:0:0:0:0:0:0:1-0:0:0:0:0:0:0:00ff", 1, 255, 6, "::1-::ff"),
    ],
)
def test_parse_ip_range(text: str, first: int, last: int, version: int, canonical: str) -> None:
    r = parse_ip_range(text)
    assert (r.first, r.last, r.version, r.text) == (first, last, version, canonical)
    assert format_ip_range(r) == canonical
    assert r.size == last - first + 1
    assert parse_ip_range(canonical) == r
    assert parse_ip_range(canonical).text == canonical


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected a single IP address"),
        ("   ", "expected a single IP address"),
        ("any", "expected a single IP address"),
        ("127.0.0.256", "expected a single IP address"),
        ("10.0.0.0/33", "must be 0 to 32"),
        ("fd00::/129", "must be 0 to 128"),
        ("10.0.0.0/", "prefix length after / must be a number"),
        ("10.0.0.0/-1", "prefix length after / must be a number"),
        ("10.0.0.0/255.0.0.0", "prefix length after / must be a number"),
        ("10.0.0.0/8/8", "prefix length after / must be a number"),
        ("/8", "expected a single IP address"),
        ("10.0.0.9-10.0.0.1", "must not be greater than the last"),
        ("::2-::1", "must not be greater than the last"),
        ("10.0.0.1-::1", "both ends of a range must be IPv4 or both IPv6"),
        ("::ffff:10.0.0.1-10.0.0.2", "both ends of a range must be IPv4 or both IPv6"),
        ("10.0.0.1-", "expected a single IP address"),
        ("-10.0.0.1", "expected a single IP address"),
        ("10.0.0.1-10.0.0.2-10.0.0.3", "expected a single IP address"),
        ("10.0.0.1,10.0.0.2", "expected a single IP address"),
        ("*", "expected a single IP address"),
    ],
)
def test_parse_ip_range_rejects(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_ip_range(text)


@pytest.mark.parametrize("value", [None, 5, ["10.0.0.1"]])
def test_parse_ip_range_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="expected a single IP address"):
        parse_ip_range(value)  # type: ignore[arg-type]


def test_ip_range_equality_ignores_the_written_form() -> None:
    block = parse_ip_range("10.0.0.0/24")
    same = parse_ip_range("10.0.0.0-10.0.0.255")
    assert block == same and hash(block) == hash(same)
    assert block.text != same.text
    assert parse_ip_range("10.0.0.0/32") == parse_ip_range("10.0.0.0")
    assert parse_ip_range("::/0") != parse_ip_range("0.0.0.0/0")


def test_ip_range_contains() -> None:
    net = parse_ip_range("127.0.22.0/24")
    assert net.contains(ipaddress.IPv4Address("127.0.22.0"))
    assert net.contains(ipaddress.IPv4Address("127.0.22.255"))
    assert not net.contains(ipaddress.IPv4Address("127.0.23.0"))
    assert not net.contains(ipaddress.IPv4Address("127.0.21.255"))
    # Versions are kept apart: an IPv4-mapped IPv6 address is not in an IPv4 range.
    assert not net.contains(ipaddress.IPv6Address("::ffff:127.0.22.1"))
    everything4 = parse_ip_range("0.0.0.0-255.255.255.255")
    assert not everything4.contains(ipaddress.IPv6Address("::1"))
    link = parse_ip_range("fe80::/10")
    assert link.contains(parse_address("fe80::1%13"))
    # An address that kept its scope id is still inside.
    assert link.contains(ipaddress.IPv6Address("fe80::1%13"))
    assert not link.contains(ipaddress.IPv4Address("0.0.0.1"))


def test_ip_range_relations() -> None:
    big = parse_ip_range("127.0.30.0/24")
    nested = parse_ip_range("127.0.30.10-127.0.30.20")
    partial = parse_ip_range("127.0.30.128-127.0.31.10")
    apart = parse_ip_range("127.0.40.0/24")
    v6 = parse_ip_range("::/0")
    assert big.contains_range(nested) and not nested.contains_range(big)
    assert big.contains_range(big)
    assert big.overlaps(nested) and nested.overlaps(big)
    assert not big.partially_overlaps(nested) and not nested.partially_overlaps(big)
    assert not big.partially_overlaps(big)
    assert big.overlaps(partial) and partial.overlaps(big)
    assert big.partially_overlaps(partial) and partial.partially_overlaps(big)
    assert not big.contains_range(partial)
    assert not big.overlaps(apart) and not big.partially_overlaps(apart)
    assert not v6.contains_range(big) and not v6.overlaps(big) and not big.overlaps(v6)
    # Touching ends share one address.
    left = parse_ip_range("10.0.0.0-10.0.0.5")
    right = parse_ip_range("10.0.0.5-10.0.0.9")
    assert left.partially_overlaps(right)
    assert not left.overlaps(parse_ip_range("10.0.0.6-10.0.0.9"))


def ranges_of(version: int) -> st.SearchStrategy[IPRange]:
    """Arbitrary ranges written as a-b, CIDR or a single address."""
    top = V4_ALL if version == 4 else V6_ALL
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    bits = 32 if version == 4 else 128

    def lohi(pair: tuple[int, int]) -> str:
        a, b = sorted(pair)
        return f"{make(a)}-{make(b)}"

    def cidr(args: tuple[int, int]) -> str:
        address, prefix = args
        return f"{make(address)}/{prefix}"

    edge = st.sampled_from([0, 1, top - 1, top])
    number = st.one_of(st.integers(min_value=0, max_value=top), edge)
    texts = st.one_of(
        st.tuples(number, number).map(lohi),
        st.tuples(number, st.integers(min_value=0, max_value=bits)).map(cidr),
        number.map(lambda n: str(make(n))),
    )
    return texts.map(parse_ip_range)


@pytest.mark.parametrize("version", [4, 6])
@given(data=st.data())
def test_ip_range_round_trip(version: int, data: st.DataObject) -> None:
    r = data.draw(ranges_of(version))
    text = format_ip_range(r)
    again = parse_ip_range(text)
    assert again == r
    assert (again.first, again.last, again.version, again.text) == (
        r.first,
        r.last,
        r.version,
        r.text,
    )
    assert format_ip_range(again) == text
    assert r.version == version
    assert 0 <= r.first <= r.last <= (V4_ALL if version == 4 else V6_ALL)
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    assert r.contains(make(r.first)) and r.contains(make(r.last))
    if r.first > 0:
        assert not r.contains(make(r.first - 1))


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_cidr_matches_the_stdlib_network(address: Address, prefix: int) -> None:
    prefix = min(prefix, address.max_prefixlen)
    r = parse_ip_range(f"{address}/{prefix}")
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert (r.first, r.last) == (int(network.network_address), int(network.broadcast_address))
    assert r.size == network.num_addresses
    expected = str(network.network_address) if prefix == address.max_prefixlen else str(network)
    assert r.text == expected


# Random small ranges inside 10.0.0.0-10.0.0.15 and ::-::f, against sets of addresses.
SMALL = 16


def small_range(version: int, a: int, b: int) -> IPRange:
    lo, hi = sorted((a, b))
    if version == 4:
        base = v4("10.0.0.0")
        return parse_ip_range(
            f"{ipaddress.IPv4Address(base + lo)}-{ipaddress.IPv4Address(base + hi)}"
        )
    return parse_ip_range(f"{ipaddress.IPv6Address(lo)}-{ipaddress.IPv6Address(hi)}")


small_ranges = st.builds(
    small_range,
    st.sampled_from([4, 6]),
    st.integers(min_value=0, max_value=SMALL - 1),
    st.integers(min_value=0, max_value=SMALL - 1),
)


def members(r: IPRange) -> set[tuple[int, int]]:
    return {(r.version, n) for n in range(r.first, r.last + 1)}


@given(small_ranges, small_ranges)
def test_relations_agree_with_brute_force(a: IPRange, b: IPRange) -> None:
    sa, sb = members(a), members(b)
    assert a.contains_range(b) == (sb <= sa)
    assert b.contains_range(a) == (sa <= sb)
    assert a.overlaps(b) == bool(sa & sb) == b.overlaps(a)
    partial = bool(sa & sb) and not sa <= sb and not sb <= sa
    assert a.partially_overlaps(b) == partial == b.partially_overlaps(a)
    assert a.size == len(sa)
    base = v4("10.0.0.0") if a.version == 4 else 0
    make = ipaddress.IPv4Address if a.version == 4 else ipaddress.IPv6Address
    for n in range(base, base + SMALL):
        assert a.contains(make(n)) == ((a.version, n) in sa)


# --- bindings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "port", "canonical"),
    [
        ("0.0.0.0:25", "0.0.0.0", 25, "0.0.0.0:25"),
        ("[::]:25", "::", 25, "[::]:25"),
        ("127.0.10.1:2525", "127.0.10.1", 2525, "127.0.10.1:2525"),
        (" 127.0.10.1 : 587 ", "127.0.10.1", 587, "127.0.10.1:587"),
        ("[::1]:1", "::1", 1, "[::1]:1"),
        ("[0:0:0:0:0:0:0:1]:65535", "::1", 65535, "[::1]:65535"),
        ("[fe80::1%13]:25", "fe80::1", 25, "[fe80::1]:25"),
        ("10.0.0.1:00025", "10.0.0.1", 25, "10.0.0.1:25"),
    ],
)
def test_parse_binding(text: str, address: str, port: int, canonical: str) -> None:
    b = parse_binding(text)
    assert b == Binding(ipaddress.ip_address(address), port)
    assert b.format() == canonical
    assert parse_binding(canonical) == b


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "the port is missing"),
        ("0.0.0.0", "the port is missing"),
        ("[::]", "the port is missing"),
        ("[::]25", "the port is missing"),
        ("0.0.0.0:", "the port must be 1 to 65535"),
        ("0.0.0.0:0", "the port must be 1 to 65535"),
        ("0.0.0.0:65536", "the port must be 1 to 65535"),
        ("0.0.0.0:100000", "the port must be 1 to 65535"),
        ("0.0.0.0:-25", "the port must be 1 to 65535"),
        ("0.0.0.0:smtp", "the port must be 1 to 65535"),
        ("0.0.0.0:2 5", "the port must be 1 to 65535"),
        ("[::]:0", "the port must be 1 to 65535"),
        ("::1:25", "an IPv6 address must be in brackets"),
        ("[127.0.0.1]:25", "only IPv6 addresses go in brackets"),
        ("[[::1]]:25", "expected IPv4:port or \\[IPv6\\]:port"),
        ("mail.contoso.com:25", "expected IPv4:port or \\[IPv6\\]:port"),
        ("127.0.0.256:25", "expected IPv4:port or \\[IPv6\\]:port"),
        ("224.0.0.1:25", "Bindings must be local IPs; no multicast/broadcast"),
        ("239.255.255.250:25", "Bindings must be local IPs; no multicast/broadcast"),
        ("255.255.255.255:25", "Bindings must be local IPs; no multicast/broadcast"),
        ("[ff02::1]:25", "Bindings must be local IPs; no multicast/broadcast"),
        ("[ff05::1:3]:547", "Bindings must be local IPs; no multicast/broadcast"),
    ],
)
def test_parse_binding_rejects(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_binding(text)


@pytest.mark.parametrize("value", [None, 25, ("0.0.0.0", 25)])
def test_parse_binding_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError, match="expected IPv4:port"):
        parse_binding(value)  # type: ignore[arg-type]


def test_binding_wildcards() -> None:
    assert parse_binding("0.0.0.0:25").is_wildcard
    assert parse_binding("[::]:25").is_wildcard
    assert not parse_binding("127.0.10.1:25").is_wildcard
    assert not parse_binding("[::1]:25").is_wildcard


def test_binding_matches() -> None:
    any4 = parse_binding("0.0.0.0:25")
    any6 = parse_binding("[::]:25")
    exact = parse_binding("127.0.10.1:25")
    exact6 = parse_binding("[fe80::1]:25")
    local4 = ipaddress.IPv4Address("127.0.10.1")
    other4 = ipaddress.IPv4Address("127.0.10.2")
    local6 = ipaddress.IPv6Address("fe80::1")
    assert any4.matches(local4, 25) and any4.matches(other4, 25)
    assert not any4.matches(local4, 26)
    assert not any4.matches(local6, 25)  # wildcard of the other family
    assert not any4.matches(ipaddress.IPv6Address("::ffff:127.0.10.1"), 25)
    assert any6.matches(local6, 25) and not any6.matches(local4, 25)
    assert not any6.matches(local6, 2525)
    assert exact.matches(local4, 25)
    assert not exact.matches(other4, 25) and not exact.matches(local4, 2525)
    assert not exact.matches(ipaddress.IPv6Address("::ffff:127.0.10.1"), 25)
    assert exact6.matches(local6, 25)
    # A socket address that carries its scope id still matches.
    assert exact6.matches(ipaddress.IPv6Address("fe80::1%13"), 25)
    assert not exact6.matches(ipaddress.IPv6Address("fe80::2"), 25)


def bindable(address: Address) -> bool:
    return not address.is_multicast and address != ipaddress.IPv4Address("255.255.255.255")


@given(
    st.ip_addresses().filter(bindable),
    st.integers(min_value=1, max_value=65535),
)
def test_binding_round_trip(address: Address, port: int) -> None:
    b = Binding(address, port)
    text = b.format()
    assert parse_binding(text) == b
    assert parse_binding(text).format() == text
    assert b.matches(address, port)
    assert b.is_wildcard == (int(address) == 0)
