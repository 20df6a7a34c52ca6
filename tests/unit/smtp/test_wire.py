"""DATA framing and line-ending hygiene, fed byte by byte and in random chunks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exchsim.smtp.wire import (
    DataReader,
    normalize_line_endings,
    parse_bdat,
    parse_keyword_args,
    xtext_decode,
    xtext_encode,
)


def read_all(stream: bytes, limit: int | None = None) -> tuple[bytes | None, bytes, DataReader]:
    """Split like readuntil(b'\\r\\n') does and feed the reader; returns (message, rest)."""
    reader = DataReader(limit=limit)
    pos = 0
    while True:
        end = stream.find(b"\r\n", pos)
        if end < 0:
            return None, stream[pos:], reader
        if reader.feed(stream[pos : end + 2]):
            return reader.message(), stream[end + 2 :], reader
        pos = end + 2


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
