"""Header firewall, authentication stamping and Received headers (exchange.md §5)."""

from __future__ import annotations

import datetime

from exchsim.policy.headers import (
    firewall,
    make_field,
    parse_message,
    received_field,
    sender_addresses,
    stamp_authentication,
)
from exchsim.policy.permissions import Right

MESSAGE = (
    b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"X-MS-Exchange-Organization-SCL: -1\r\n"
    b"X-MS-Exchange-Organization-AuthAs: Internal\r\n"
    b"X-MS-Exchange-Forest-Foo: 1\r\n"
    b"Subject: hello\r\n"
    b" folded\r\n"
    b"\r\n"
    b"body\r\n"
)
ROUTING = frozenset({Right.ACCEPT_HEADERS_ROUTING})


def test_parse_round_trips_bytes() -> None:
    msg = parse_message(MESSAGE)
    assert msg.to_bytes() == MESSAGE
    assert msg.first("subject") == "hello folded"
    assert msg.header_size == MESSAGE.index(b"\r\n\r\n") + 2


def test_anonymous_firewall_strips_org_and_forest_keeps_received() -> None:
    out = firewall(parse_message(MESSAGE), ROUTING)
    assert out.first("X-MS-Exchange-Organization-SCL") is None
    assert out.first("X-MS-Exchange-Forest-Foo") is None
    assert out.values("Received") == ["from a by b; Mon, 1 Jan 2024 00:00:00 +0000"]
    assert out.first("Subject") == "hello folded"


def test_firewall_is_idempotent_and_keeps_all_for_exchange_servers() -> None:
    once = firewall(parse_message(MESSAGE), ROUTING)
    assert firewall(once, ROUTING) == once
    everything = frozenset(Right)
    assert firewall(parse_message(MESSAGE), everything).to_bytes() == MESSAGE
    assert firewall(parse_message(MESSAGE), frozenset()).values("Received") == []


def test_anonymous_stamp() -> None:
    out = stamp_authentication(firewall(parse_message(MESSAGE), ROUTING), rights=ROUTING,
                               auth_as="Anonymous", mechanism="00", server_fqdn="ex01.contoso.com")
    assert out.first("X-MS-Exchange-Organization-AuthAs") == "Anonymous"
    assert out.first("X-MS-Exchange-Organization-AuthSource") == "ex01.contoso.com"
    assert out.first("X-MS-Exchange-Organization-AuthMechanism") is None


def test_forged_authas_is_replaced_for_untrusted_sessions() -> None:
    out = stamp_authentication(parse_message(MESSAGE), rights=ROUTING, auth_as="Internal",
                               mechanism="10", server_fqdn="ex01.contoso.com")
    assert out.values("X-MS-Exchange-Organization-AuthAs") == ["Internal"]
    assert out.first("X-MS-Exchange-Organization-AuthMechanism") == "10"


def test_existing_authas_from_an_exchange_server_is_untouched() -> None:
    msg = parse_message(MESSAGE)
    out = stamp_authentication(msg, rights=frozenset(Right), auth_as="Anonymous", mechanism="0c",
                               server_fqdn="ex02.contoso.com")
    assert out == msg


def test_received_header_format() -> None:
    now = datetime.datetime(2023, 3, 25, 8, 23, 47, tzinfo=datetime.timezone(datetime.timedelta(hours=5)))
    field = received_field(helo="client.example", client_ip="127.0.0.1",
                           server_fqdn="ex01.contoso.com", server_ip="127.0.10.1",
                           version_id="15.2.1118.7", now=now,
                           tls=("TLS1_2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
                           via="Frontend Transport")
    assert field.value == (
        "from client.example (127.0.0.1) by ex01.contoso.com (127.0.10.1) with Microsoft SMTP "
        "Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1118.7 "
        "via Frontend Transport; Sat, 25 Mar 2023 08:23:47 +0500"
    )


def test_message_without_blank_line() -> None:
    """The old round trip (no separator written) was finding 7's flaw: a stored copy must
    have a blank line between the header block and whatever follows it."""
    msg = parse_message(b"Subject: x\r\nnot a header line\r\n")
    assert msg.first("Subject") == "x"
    assert msg.body == b"not a header line\r\n"
    assert msg.to_bytes() == b"Subject: x\r\n\r\nnot a header line\r\n"
    # A message that is only a header block needs no separator.
    assert parse_message(b"Subject: x\r\n").to_bytes() == b"Subject: x\r\n"
    assert parse_message(b"Subject: x").to_bytes() == b"Subject: x\r\n"
    assert parse_message(b"").to_bytes() == b""


# Finding 7 of issue 7: the parser and the firewall agree on where the header block ends.
SPOOF = (
    b"From: a@fabrikam.example\r\n"
    b"X-MS-Exchange-Organization-Foo : v\r\n"
    b"X-MS-Exchange-Organization-AuthAs: Internal\r\n"
    b"X-MS-Exchange-Forest-Bar\t: 1\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"body\r\n"
)


def test_space_before_colon_is_a_header_field_and_is_firewalled() -> None:
    msg = parse_message(SPOOF)
    assert [f.key for f in msg.fields] == [
        b"from", b"x-ms-exchange-organization-foo", b"x-ms-exchange-organization-authas",
        b"x-ms-exchange-forest-bar", b"subject"]
    assert msg.body == b"body\r\n"
    out = firewall(msg, ROUTING).to_bytes()
    assert out == b"From: a@fabrikam.example\r\nSubject: hi\r\n\r\nbody\r\n"


def test_obsolete_whitespace_before_the_colon_is_written_without_it() -> None:
    msg = parse_message(b"Subject \t: hi\r\n there\r\nTo:b@c\r\n\r\nx")
    assert msg.first("Subject") == "hi there"
    assert msg.to_bytes() == b"Subject: hi\r\n there\r\nTo:b@c\r\n\r\nx"


JUNK = [b"not a header line", b": starts with a colon", b"Na\xc3\xafve: x", b"Two words: x",
        b"Bare\nLF: x", b"Bare\rCR: x", b"Nul\x00: x"]


def test_a_junk_line_ends_the_header_block_and_gets_a_blank_line_before_it() -> None:
    for junk in JUNK:
        rest = junk + b"\r\nX-MS-Exchange-Organization-AuthAs: Internal\r\n\r\nb"
        msg = parse_message(b"Subject: x\r\n" + rest)
        assert [f.key for f in msg.fields] == [b"subject"]
        assert (msg.body, msg.has_separator) == (rest, False)
        assert firewall(msg, ROUTING).to_bytes() == b"Subject: x\r\n\r\n" + rest


def test_a_continuation_line_before_any_field_starts_the_body() -> None:
    rest = b" X-MS-Exchange-Organization-AuthAs: Internal\r\nTo: b@c\r\n\r\nb"
    msg = parse_message(rest)
    assert (msg.fields, msg.body) == ((), rest)
    assert msg.prepend(make_field("Received", "x")).to_bytes() == b"Received: x\r\n\r\n" + rest


# Finding 6 of issue 7 (headers): no unbounded recursion on a header.
def test_sender_addresses_of_ordinary_headers() -> None:
    assert sender_addresses(["Alice <alice@contoso.com>, bob@fabrikam.example (Bob (B))",
                             "undisclosed:;", '"x, y" <c@d.example>']) == [
        "alice@contoso.com", "bob@fabrikam.example", "c@d.example"]


def test_sender_addresses_never_recurse_without_bound() -> None:
    for value in ["(" * 5000 + "ceo@contoso.com", "a:" * 5000 + "ceo@contoso.com" + ";" * 5000,
                  "(" * 5000 + ")" * 5000 + " <ceo@contoso.com>"]:
        assert sender_addresses([value]) == ["ceo@contoso.com"]
    assert sender_addresses(["(" * 5000]) == []
    assert sender_addresses(["(" * 60 + "x@y.example" + ")" * 60]) == []  # a comment, parsed
