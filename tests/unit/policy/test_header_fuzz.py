"""Fuzzing the header parser against the firewall and Python's ``email`` (issue 7, finding 7).

Header blocks with odd names, spacing and case, folded lines, the obsolete WSP before the
colon, organization, forest and routing headers, junk lines and stray line endings go through
``parse_message``, the firewall with an anonymous session's rights, and ``to_bytes``; the
output, read back by Python's ``email`` parser (compat32 and default policies), must show no
organization or forest header (all of them came from the client), the same header fields and
body as exchsim's parser, and one separator between them whenever there is a body.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
from email.policy import Policy

from hypothesis import given, settings, strategies as st

from exchsim.config.model import PermissionGroup
from exchsim.policy.headers import FOREST_PREFIX, ORG_PREFIX, firewall, parse_message
from exchsim.policy.permissions import permission_group_entries
from exchsim.smtp.wire import normalize_line_endings

((_, ANONYMOUS),) = permission_group_entries(PermissionGroup.ANONYMOUS_USERS, "CONTOSO")
POLICIES: tuple[Policy, ...] = (email.policy.compat32, email.policy.default)

FTEXT = "".join(chr(c) for c in range(0x21, 0x7F) if c != 0x3A)
NAMES = st.one_of(
    st.sampled_from([
        "X-MS-Exchange-Organization-AuthAs", "X-MS-Exchange-Organization-SCL",
        "X-MS-Exchange-Organization-Network-Message-Id", "X-MS-Exchange-Organization-",
        "X-MS-Exchange-Forest-ArrivalHubServer", "X-MS-Exchange-Forest-", "Received",
        "Resent-From", "From", "To", "Subject", "Message-ID", "X-Mailer", "Date",
    ]),
    st.text(FTEXT, min_size=1, max_size=12),
)
CASES = st.sampled_from([str, str.lower, str.upper, str.swapcase, str.title])
BEFORE_COLON = st.sampled_from(["", "", "", " ", "\t", "  ", " \t "])
TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x17F, exclude_characters="\r\n"),
               max_size=20)
FOLD = st.tuples(st.sampled_from([" ", "\t", "  "]), TEXT).map("".join)
JUNK = st.sampled_from([
    "no colon at all", ": starts with a colon", "Na\u00efve: non-ASCII name", "Two words: x",
    " leading space", "\tX-MS-Exchange-Organization-Indented: v", "From a@b.example Mon Jan 1",
    "X-MS-Exchange-Organization-Bare\nLF: v", "X-MS-Exchange-Organization-Bare\rCR: v",
    "X-MS-Exchange-Organization-Nul\x00: v", "X-MS-Exchange-Organization-Del\x7f: v",
    "  ", "",
])
EOL = st.sampled_from(["\r\n"] * 8 + ["\n", "\r"])


@st.composite
def field(draw: st.DrawFn) -> list[str]:
    name = draw(CASES)(draw(NAMES))
    first = f"{name}{draw(BEFORE_COLON)}:{draw(st.sampled_from(['', ' ']))}{draw(TEXT)}"
    return [first, *draw(st.lists(FOLD, max_size=2))]


@st.composite
def message(draw: st.DrawFn) -> bytes:
    lines: list[str] = []
    for kind in draw(st.lists(st.sampled_from("fffffj"), max_size=12)):
        lines += draw(field()) if kind == "f" else [draw(JUNK)]
    body = draw(st.one_of(st.none(), st.lists(st.one_of(TEXT, field().map("".join)), max_size=4)))
    if body is not None:
        lines += ["", *body]
    text = "".join(line + draw(EOL) for line in lines)
    if draw(st.booleans()) and text.endswith("\r\n"):
        text = text[:-2]  # a BDAT message need not end with CRLF
    return text.encode("utf-8")


def check(data: bytes) -> None:
    parsed = firewall(parse_message(data), ANONYMOUS)
    out = parsed.to_bytes()
    head = b"".join(f.raw for f in parsed.fields)
    wants_separator = parsed.has_separator or bool(parsed.body)
    assert out == head + (b"\r\n" + parsed.body if wants_separator else b"")
    assert head.replace(b"\r\n", b"").count(b"\r") == head.replace(b"\r\n", b"").count(b"\n") == 0
    assert parse_message(out).to_bytes() == out  # the next hop reads it the same way
    for policy in POLICIES:
        msg = email.message_from_bytes(out, policy=policy)
        names = [name.strip().lower().encode("ascii", "replace") for name in msg]
        assert not [n for n in names if n.startswith((ORG_PREFIX, FOREST_PREFIX))], out
        assert names == [f.key for f in parsed.fields], out
        assert not [d for d in msg.defects
                    if isinstance(d, email.errors.MissingHeaderBodySeparatorDefect)], out
        if not msg.is_multipart():
            assert msg.get_payload(decode=True) == parsed.body, out  # no transfer encoding


@settings(max_examples=400, deadline=None)
@given(message())
def test_no_client_organization_header_survives_as_the_session_delivers_it(data: bytes) -> None:
    check(normalize_line_endings(data)[0])  # what the session core hands the transport


@settings(max_examples=200, deadline=None)
@given(message())
def test_no_client_organization_header_survives_even_with_bare_line_endings(data: bytes) -> None:
    check(data)


def test_the_issue_example() -> None:
    check(b"From: a@fabrikam.example\r\nX-MS-Exchange-Organization-Foo : v\r\n"
          b"X-MS-Exchange-Organization-AuthAs: Internal\r\nReceived: from x by y\r\n\r\nbody\r\n")
