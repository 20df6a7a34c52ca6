"""Header firewall, authentication stamping and Received headers (exchange.md §5)."""

from __future__ import annotations

import dataclasses
import datetime
import re
from typing import Any

import pytest

from exchsim.policy.headers import (
    Arrival,
    end_to_end_latency,
    firewall,
    fold,
    make_field,
    network_message_id,
    network_message_time,
    parse_message,
    received_field,
    sender_addresses,
    stamp_arrival,
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
TLS128 = ("TLS1_2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
TLS256 = ("TLS1_2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384")


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
    field = received_field(from_name="client.example", from_ip="127.0.0.1",
                           by_name="ex01.contoso.com", by_ip="127.0.10.1",
                           build="15.2.1118.7", now=now,
                           tls=("TLS1_2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
                           via="Frontend Transport")
    assert field.value == (
        "from client.example (127.0.0.1) by ex01.contoso.com (127.0.10.1) with Microsoft SMTP "
        "Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1118.7 "
        "via Frontend Transport; Sat, 25 Mar 2023 08:23:47 +0500"
    )
    assert all(len(line) <= 78 for line in field.raw.decode().split("\r\n"))


# Received lines exactly as real Exchange 2016/2019 servers folded them (exchange.md §12.1:
# S1, S2, S3), each rebuilt from its parts.
SAMPLES = [
    ("chn-vm-ex02.mchp-main.com", "10.10.85.144", "chn-vm-ex04.mchp-main.com", "10.10.85.152",
     "15.1.2375.17", TLS128, None, (2022, 6, 9, 1, 30, 40, -7),
     "Received: from chn-vm-ex02.mchp-main.com (10.10.85.144) by\r\n"
     " chn-vm-ex04.mchp-main.com (10.10.85.152) with Microsoft SMTP Server\r\n"
     " (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id\r\n"
     " 15.1.2375.17; Thu, 9 Jun 2022 01:30:40 -0700\r\n"),
    ("localhost.localdomain", "10.10.115.15", "chn-vm-ex02.mchp-main.com", "10.10.85.144",
     "15.1.2375.17", None, "Frontend Transport", (2022, 6, 9, 1, 30, 37, -7),
     "Received: from localhost.localdomain (10.10.115.15) by\r\n"
     " chn-vm-ex02.mchp-main.com (10.10.85.144) with Microsoft SMTP Server id\r\n"
     " 15.1.2375.17 via Frontend Transport; Thu, 9 Jun 2022 01:30:37 -0700\r\n"),
    ("orsmsx611.amr.corp.intel.com", "10.22.229.24", "fmsmsx612.amr.corp.intel.com",
     "10.18.126.92", "15.1.1713.5", TLS128, "Mailbox Transport", (2021, 1, 11, 14, 51, 41, -8),
     "Received: from orsmsx611.amr.corp.intel.com (10.22.229.24) by\r\n"
     " fmsmsx612.amr.corp.intel.com (10.18.126.92) with Microsoft SMTP Server\r\n"
     " (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id 15.1.1713.5\r\n"
     " via Mailbox Transport; Mon, 11 Jan 2021 14:51:41 -0800\r\n"),
    ("TWMBX01.aspeed.com", "192.168.0.62", "TWMBX01.aspeed.com", "192.168.0.62",
     "15.2.1748.10", TLS256, None, (2025, 7, 8, 13, 58, 10, 8),
     "Received: from TWMBX01.aspeed.com (192.168.0.62) by TWMBX01.aspeed.com\r\n"
     " (192.168.0.62) with Microsoft SMTP Server (version=TLS1_2,\r\n"
     " cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1748.10; Tue, 8 Jul\r\n"
     " 2025 13:58:10 +0800\r\n"),
    ("mail.aspeedtech.com", "192.168.10.10", "TWMBX01.aspeed.com", "192.168.0.62",
     "15.2.1748.10", None, "Frontend Transport", (2025, 7, 8, 13, 58, 10, 8),
     "Received: from mail.aspeedtech.com (192.168.10.10) by TWMBX01.aspeed.com\r\n"
     " (192.168.0.62) with Microsoft SMTP Server id 15.2.1748.10 via Frontend\r\n"
     " Transport; Tue, 8 Jul 2025 13:58:10 +0800\r\n"),
    ("output47.mail.ovh.net", "164.132.34.47", "mxplan5.mail.ovh.net", "172.16.2.82",
     "15.1.2507.44", TLS256, "Frontend Transport", (2025, 7, 8, 7, 58, 23, 2),
     "Received: from output47.mail.ovh.net (164.132.34.47) by mxplan5.mail.ovh.net\r\n"
     " (172.16.2.82) with Microsoft SMTP Server (version=TLS1_2,\r\n"
     " cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.44 via Frontend\r\n"
     " Transport; Tue, 8 Jul 2025 07:58:23 +0200\r\n"),
]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s[2] + "/" + str(s[6]) for s in SAMPLES])
def test_received_lines_fold_as_exchange_folds_them(sample: tuple[Any, ...]) -> None:
    from_name, from_ip, by_name, by_ip, build, tls, via, when, expected = sample
    *parts, hours = when
    zone = datetime.timezone(datetime.timedelta(hours=hours))
    field = received_field(from_name=from_name, from_ip=from_ip, by_name=by_name, by_ip=by_ip,
                           build=build, now=datetime.datetime(*parts, tzinfo=zone), tls=tls,
                           via=via)
    assert field.raw.decode() == expected


def test_received_2013_tls_and_ipv6() -> None:
    now = datetime.datetime(2017, 12, 13, 16, 10, 1, tzinfo=datetime.UTC)
    field = received_field(from_name="SRV124.ville-saumur.fr", from_ip="::1",
                           by_name="SRV124.ville-saumur.fr", by_ip="fe80::1", build="15.0.1178.4",
                           now=now, tls=TLS256, tls_2013=True)
    assert field.value == ("from SRV124.ville-saumur.fr ([::1]) by SRV124.ville-saumur.fr "
                           "([fe80::1]) with Microsoft SMTP Server (TLS) id 15.0.1178.4; "
                           "Wed, 13 Dec 2017 16:10:01 +0000")


def test_fold_keeps_a_long_word_whole() -> None:
    word = "x" * 90
    assert fold("Received", f"from {word} by y") == f"Received: from\r\n {word}\r\n by y\r\n"


ARRIVAL = Arrival(sender="someone@fabrikam.example", network_message_id="nmid",
                  message_id=None, auth_as="Anonymous", mechanism="00",
                  auth_source="ex01.contoso.com", auth_domain=None, bypass_anti_spam=False)


def test_arrival_of_an_anonymous_message_in_the_order_of_the_samples() -> None:
    msg = parse_message(b"Return-Path: <forged@x>\r\n" + MESSAGE)
    out = stamp_arrival(firewall(msg, ROUTING), ROUTING, ARRIVAL)
    names = [f.name.decode() for f in out.fields]
    assert names == ["Received", "Subject", "Return-Path",
                     "X-MS-Exchange-Organization-Network-Message-Id",
                     "X-MS-Exchange-Organization-AVStamp-Enterprise",
                     "X-MS-Exchange-Organization-AuthSource",
                     "X-MS-Exchange-Organization-AuthAs"]
    assert out.first("Return-Path") == "someone@fabrikam.example"
    assert out.first("X-MS-Exchange-Organization-AVStamp-Enterprise") == "1.0"


def test_arrival_of_an_authenticated_message_has_its_auth_headers_first() -> None:
    internal = dataclasses.replace(ARRIVAL, auth_as="Internal", mechanism="06",
                                   auth_domain="alice@contoso.com", bypass_anti_spam=True,
                                   message_id="<g@ex01.contoso.com>", sender="")
    out = stamp_arrival(parse_message(b"Subject: x\r\n\r\nbody\r\n"), ROUTING, internal)
    assert [f.raw.decode() for f in out.fields] == [
        "Subject: x\r\n", "Message-ID: <g@ex01.contoso.com>\r\n", "Return-Path: <>\r\n",
        "X-MS-Exchange-Organization-Network-Message-Id: nmid\r\n",
        "X-MS-Exchange-Organization-AuthSource: ex01.contoso.com\r\n",
        "X-MS-Exchange-Organization-AuthAs: Internal\r\n",
        "X-MS-Exchange-Organization-AuthMechanism: 06\r\n",
        "X-MS-Exchange-Organization-AVStamp-Enterprise: 1.0\r\n",
        "X-MS-Exchange-Organization-SCL: -1\r\n",
    ]


def test_arrival_keeps_what_an_exchange_server_stamped() -> None:
    out = stamp_arrival(parse_message(MESSAGE), frozenset(Right), ARRIVAL)
    assert out.values("X-MS-Exchange-Organization-AuthAs") == ["Internal"]
    assert out.values("X-MS-Exchange-Organization-SCL") == ["-1"]
    assert out.first("X-MS-Exchange-Organization-AuthSource") is None


def test_network_message_id_carries_its_time_like_exchanges() -> None:
    # S3: 126a28f3-a563-4c49-b5da-08ddbde472e1, on a message whose three Received lines all
    # say 07:58:23 +0200: the id's time is 05:58:23.401 UTC.
    sample = network_message_time("126a28f3-a563-4c49-b5da-08ddbde472e1")
    assert sample is not None
    assert sample.isoformat(timespec="milliseconds") == "2025-07-08T05:58:23.401+00:00"
    now = datetime.datetime(2026, 11, 29, 6, 30, 1, 234567, tzinfo=datetime.UTC)
    made = network_message_id(now, bytes(range(16)))
    assert re.fullmatch(r"00010203-0405-4607-0809-[0-9a-f]{12}", made), made
    back = network_message_time(made)
    assert back is not None and datetime.timedelta(0) <= now - back < datetime.timedelta(
        milliseconds=7)
    assert network_message_time("not-a-guid") is None


@pytest.mark.parametrize(("seconds", "text"), [
    (0.5736284, "00:00:00.5736284"), (0, "00:00:00.0000000"), (3725.25, "01:02:05.2500000"),
    (-1, "00:00:00.0000000"), (90000.5, "1.01:00:00.5000000"),
])
def test_end_to_end_latency_is_a_timespan(seconds: float, text: str) -> None:
    assert end_to_end_latency(seconds) == text


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
