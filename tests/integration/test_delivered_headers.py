"""The header block of a delivered message, hop by hop, as Exchange writes it (exchange.md §12.1
and exchange.md §12.2): golden texts over the running lab, with real clients (smtplib, swaks).

A golden file holds the delivered header block one field a line (unfolded), with dates, GUIDs
and the latency masked; how each Received line is folded is checked on its own (at spaces,
lines of at most 78 characters, as the real samples are), since a masked date changes where
the folds fall.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from pathlib import Path

from exchsim.policy.headers import fold, parse_message
from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RunningLab,
    start_lab,
    swaks,
    with_connectors,
)

HOST = "127.0.10.1"
GOLDEN = Path(__file__).parent / "golden"
_MASKS = [
    (re.compile(r"\b[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\b"),
     "<date>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<guid>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\.\d{7}\b"), "<latency>"),
]


def header_block(raw: bytes) -> str:
    """The delivered header block, one unfolded field a line, masked; each Received line's
    folding checked against Exchange's rule."""
    lines = []
    for field in parse_message(raw).fields:
        name = field.name.decode()
        if name == "Received":
            assert field.raw.decode() == fold(name, field.value), field.raw
        line = f"{name}: {field.value}"
        for pattern, mask in _MASKS:
            line = pattern.sub(mask, line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def check_golden(name: str, raw: bytes) -> None:
    got = header_block(raw)
    expected = (GOLDEN / name).read_text(encoding="utf-8")
    assert got == expected, f"\n--- expected {name}\n{expected}\n--- got\n{got}"


def send_anonymous(port: int) -> None:
    """An Internet server's message without a Message-ID, in clear text on port 25."""
    data = ("From: someone@fabrikam.example\r\nTo: alice@contoso.com\r\n"
            "Subject: golden anonymous\r\n\r\nhello alice\r\n")
    with smtplib.SMTP(HOST, port, local_hostname="mail.fabrikam.example", timeout=15) as client:
        client.ehlo()
        assert client.sendmail("someone@fabrikam.example", ["alice@contoso.com"], data) == {}


def welcome(port: int) -> str:
    with smtplib.SMTP(timeout=15) as client:
        _, banner = client.connect(HOST, port)
        return banner.decode()


async def test_anonymous_message_through_port_25_lands_with_exchanges_headers(
        lab: RunningLab) -> None:
    await asyncio.to_thread(send_anonymous, lab.port(25))
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    check_golden("anonymous_25_to_alice.txt", lab.mailbox("alice@contoso.com")[0])


async def test_alice_submits_on_587_and_bob_gets_exchanges_headers(lab: RunningLab) -> None:
    code, out = await swaks(
        "--server", f"{HOST}:{lab.port(587)}", "--ehlo", "alice-pc.contoso.com", "--tls",
        "--auth", "LOGIN", "--auth-user", "alice@contoso.com", "--auth-password", "P@ssw0rd!",
        "--from", "alice@contoso.com", "--to", "bob@contoso.com",
        "--data", "From: alice@contoso.com\nTo: bob@contoso.com\nSubject: golden submission\n"
                  "Message-ID: <golden-1@contoso.com>\n\nhello bob\n")
    assert code == 0, out
    assert "235 2.7.0 Authentication successful" in out
    await lab.wait_for(lambda: len(lab.mailbox("bob@contoso.com")) == 1)
    check_golden("alice_587_to_bob.txt", lab.mailbox("bob@contoso.com")[0])


async def test_connector_fqdn_time_zone_and_cu_reach_the_headers(tmp_path: Path) -> None:
    """Default Frontend with Fqdn mail.contoso.com: the Front End's line says ``by
    mail.contoso.com``, the hub's ``from ex01.contoso.com`` (the server, exchange.md §12.1);
    Version 2016 CU22 gives the build; TimeZone Europe/Zurich the dates' offset."""
    text = with_connectors(FAST_LAB_YAML, FAST).replace(
        'Version: "15.2"}', 'Version: 2016 CU22, TimeZone: Europe/Zurich}').replace(
        "  - {Name: Default Frontend EX01, Server: EX01,",
        "  - {Name: Default Frontend EX01, Server: EX01, Fqdn: mail.contoso.com,")
    lab = await start_lab(text, tmp_path / "data")
    try:
        await asyncio.to_thread(send_anonymous, lab.port(25))
        await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
        message = parse_message(lab.mailbox("alice@contoso.com")[0])
        mailbox, hub_line, frontend = message.values("Received")
        assert frontend.startswith("from mail.fabrikam.example (127.0.0.1) by mail.contoso.com "
                                   "(127.0.10.1) with Microsoft SMTP Server id 15.1.2375.7 "
                                   "via Frontend Transport; ")
        assert hub_line.startswith("from ex01.contoso.com (127.0.10.1) by ex01.contoso.com "
                                   "(127.0.10.1) with Microsoft SMTP Server (version=TLS1_2, ")
        for line in (mailbox, hub_line, frontend):
            assert re.search(r"; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0[12]00$", line), line
        assert message.first("X-MS-Exchange-Processed-By-BccFoldering") == "15.01.2375.007"
        banner = await asyncio.to_thread(welcome, lab.port(25))
        assert re.search(r"\+0[12]00$", banner), banner
    finally:
        await lab.daemon.stop()
