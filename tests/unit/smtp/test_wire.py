"""DATA framing and line-ending hygiene, fed byte by byte and in random chunks."""

from __future__ import annotations

from hypothesis import given, strategies as st

from exchsim.policy.verbs import bdat_arguments as parse_bdat
from exchsim.smtp.wire import (
    DataCollector,
    normalize_line_endings,
    parse_keyword_args,
    xtext_decode,
    xtext_encode,
)


def read_all(stream: bytes, limit: int | None = None, piece: int = 0
             ) -> tuple[bytes | None, bytes, DataCollector]:
    """Feed the collector the whole stream (or pieces of ``piece`` bytes); returns
    (message, what follows the message, collector)."""
    reader = DataCollector(limit=limit)
    size = piece or max(len(stream), 1)
    for pos in range(0, max(len(stream), 1), size):
        chunk = stream[pos : pos + size]
        used = reader.feed(chunk)
        if used is not None:
            return reader.message(), stream[pos + used :], reader
    return None, b"", reader


def reference_read(stream: bytes, limit: int | None) -> tuple[bytes | None, bytes, bool]:
    """RFC 5321's framing line by line (lines end in CRLF only), the oracle for the above."""
    parts: list[bytes] = []
    size, overflow, pos = 0, False, 0
    while True:
        end = stream.find(b"\r\n", pos)
        if end < 0:
            return None, b"", overflow
        line = stream[pos : end + 2]
        pos = end + 2
        if line == b".\r\n":
            return (b"" if overflow else b"".join(parts)), stream[pos:], overflow
        if line.startswith(b"."):
            line = line[1:]
        size += len(line)
        if limit is not None and size > limit:
            overflow = True
        parts.append(line)


@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.\r\n", b".."]),
                max_size=40),
       st.integers(min_value=1, max_value=7), st.one_of(st.none(), st.integers(0, 30)))
def test_collector_in_any_pieces_matches_line_by_line(parts: list[bytes], piece: int,
                                                     limit: int | None) -> None:
    stream = b"".join(parts) + b"\r\n.\r\nNEXT"
    expected, rest, overflow = reference_read(stream, limit)
    message, rest_seen, reader = read_all(stream, limit, piece)
    assert (message, rest_seen, reader.overflow) == (expected, rest, overflow)


def test_only_crlf_dot_crlf_ends_the_message() -> None:
    for candidate in (b"\n.\n", b"\n.\r", b"\r.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n",
                      b"\r\n\x00.\r\n"):
        stream = b"a\r\n" + candidate + b"MAIL FROM:<x@y>\r\n.\r\nNOOP\r\n"
        message, rest, _ = read_all(stream)
        assert message is not None
        assert b"MAIL FROM:<x@y>" in message
        assert rest == b"NOOP\r\n"


def test_dot_stuffing_is_undone() -> None:
    message, _, _ = read_all(b"..leading dot\r\n.\r\n")
    assert message == b".leading dot\r\n"


def test_size_limit_overflows_but_keeps_reading_to_the_end() -> None:
    message, rest, reader = read_all(b"x" * 50 + b"\r\n" + b"y" * 50 + b"\r\n.\r\nQUIT\r\n", 60)
    assert reader.overflow and message == b"" and rest == b"QUIT\r\n"


@given(st.binary(max_size=200))
def test_normalize_leaves_no_bare_cr_or_lf(data: bytes) -> None:
    fixed, found = normalize_line_endings(data)
    stripped = fixed.replace(b"\r\n", b"")
    assert b"\r" not in stripped and b"\n" not in stripped
    assert found == (data.replace(b"\r\n", b"").count(b"\r") + data.replace(b"\r\n", b"").count(b"\n") > 0)
    assert normalize_line_endings(fixed) == (fixed, False)


def test_bdat_arguments() -> None:
    assert parse_bdat("10") == (10, False)
    assert parse_bdat("0 LAST") == (0, True)
    assert parse_bdat("10 last") == (10, True)
    for bad in (None, "", "x", "10 MORE", "1 LAST x", "-1"):
        assert parse_bdat(bad) is None


@given(st.text(max_size=40))
def test_xtext_round_trip(text: str) -> None:
    encoded = xtext_encode(text)
    assert " " not in encoded and "=" not in encoded
    assert xtext_decode(encoded) == text


def test_keyword_args() -> None:
    assert parse_keyword_args("SID=1 ip=127.0.0.1 DOMAIN=a+2Bb") == {
        "SID": "1", "IP": "127.0.0.1", "DOMAIN": "a+2Bb"}
