"""Odd input over real sockets, answered as exchange.md §1.8.1 says: what an unknown verb's
reply quotes, a lone LF inside a command line, and the tarpitted replies of a pipelined group
coming one after the other, each after its own delay; and the greeting of port 475
(exchange.md §1.1.1)."""

from __future__ import annotations

import asyncio
import re
import smtplib
import time
from pathlib import Path

import pytest

from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RawClient,
    RunningLab,
    start_lab,
    with_connectors,
)

HOST = "127.0.10.1"
UNKNOWN = "500 5.3.3 Unrecognized command 'unknown'"
RELAY = "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"


def _docmd(port: int, *commands: str) -> list[tuple[int, bytes]]:
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=10) as client:
        return [client.docmd(command) for command in commands]


async def test_unknown_verbs_are_quoted_only_when_printable(lab: RunningLab) -> None:
    # smtplib: a printable unknown verb is quoted (the verb, not the line).
    got = await asyncio.to_thread(_docmd, lab.port(25), "FOO bar baz", "xclient NAME=x")
    assert got == [(500, b"5.3.3 Unrecognized command 'FOO'"),
                   (500, b"5.3.3 Unrecognized command 'XCLIENT'")]
    # Bytes smtplib will not send: a TLS ClientHello's start, a NUL, UTF-8, an empty line.
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    for line in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"NO\x00OP",
                 "ÉHLO client.example".encode(), b""):
        await client.send(line + b"\r\n")
        assert await client.reply() == UNKNOWN
    assert await client.cmd("NOOP") == "250 2.0.0 OK"
    client.close()


async def test_a_lone_lf_stays_inside_the_command_line(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    # A QUIT ended by a lone LF is no QUIT: the whole line up to CRLF is one unknown command.
    await client.send(b"QUIT\n!\x11\x00\x0c\xac\x12\x00\x01EHLO [192.0.2.1]\r\n")
    assert await client.reply() == UNKNOWN
    # LF-only line endings: nothing is answered until a CRLF comes.
    await client.send(b"EHLO client.example\nMAIL FROM:<a@fabrikam.example>\n")
    try:
        early = await client.reply(timeout=0.5)
    except TimeoutError:
        early = ""
    assert early == ""
    await client.send(b"\r\n")
    assert await client.reply() == "501 5.5.4 Invalid domain name"
    await client.cmd("EHLO client.example")
    # A smuggled RCPT after a lone LF is part of MAIL's arguments, not a command.
    await client.send(b"MAIL FROM:<a@fabrikam.example>\nRCPT TO:<alice@contoso.com>\r\n")
    assert await client.reply() == "501 5.5.4 Unrecognized parameter"
    assert await client.cmd("RCPT TO:<alice@contoso.com>") == "503 5.5.2 Need mail command"
    assert await client.cmd("QUIT") == "221 2.0.0 Service closing transmission channel"
    assert await client.closed()


TARPIT = FAST.replace(
    '{Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:00"',
    '{Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:01"')


async def test_tarpitted_pipelined_replies_come_each_after_its_own_delay(tmp_path: Path) -> None:
    assert TARPIT != FAST
    text = with_connectors(FAST_LAB_YAML, TARPIT)
    lab = await start_lab(text, tmp_path / "data")
    try:
        client = await RawClient.connect(HOST, lab.port(25))
        await client.reply()
        await client.cmd("EHLO client.example")
        began = time.monotonic()
        await client.send(b"MAIL FROM:<a@fabrikam.example>\r\nRCPT TO:<x@fabrikam.example>\r\n"
                          b"RCPT TO:<y@fabrikam.example>\r\nRCPT TO:<alice@contoso.com>\r\n"
                          b"RSET\r\n")
        arrivals = []
        for _ in range(5):
            reply = await client.reply()
            arrivals.append((reply[:3], round(time.monotonic() - began, 1)))
        codes = [code for code, _ in arrivals]
        assert codes == ["250", "550", "550", "250", "250"]
        at = [seconds for _, seconds in arrivals]
        assert at[0] < 0.5  # the Sender OK is not held for the first 550's delay
        assert 0.8 <= at[1] < 1.6  # the first 550 after one TarpitInterval
        assert 1.8 <= at[2] < 2.6  # the second after its own, not both at the end
        assert at[3] - at[2] < 0.4 and at[4] - at[2] < 0.4  # what follows is not delayed
        client.close()
        # The log: the group as read, each reply when it goes out (exchange.md §12.7).
        log = [line.split(",", 8)[6:8] for line in lab.protocol_log().splitlines()
               if ",EX01\\Default Frontend EX01," in line]
        start = log.index(["<", "MAIL FROM:<a@fabrikam.example>"])
        assert log[start:start + 13] == [
            ["<", "MAIL FROM:<a@fabrikam.example>"], log[start + 1],  # receiving message
            ["<", "RCPT TO:<x@fabrikam.example>"], ["*", "Tarpit for '0.00:00:01'"],
            [">", "250 2.1.0 Sender OK"],
            ["<", "RCPT TO:<y@fabrikam.example>"], ["*", "Tarpit for '0.00:00:01'"],
            [">", RELAY], ["<", "RCPT TO:<alice@contoso.com>"], ["<", "RSET"],
            [">", RELAY], [">", "250 2.1.5 Recipient OK"], [">", "250 2.0.0 Resetting"]]
    finally:
        await lab.daemon.stop()


DATE = (r"(MON|TUE|WED|THU|FRI|SAT|SUN), \d{1,2} (JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
        r" \d{4} \d\d:\d\d:\d\d [+-]\d{4}")


def _greeting(port: int) -> tuple[int, bytes]:
    client = smtplib.SMTP(timeout=10)
    try:
        return client.connect(HOST, port)
    finally:
        client.close()


@pytest.mark.parametrize(("version", "capitals"), [("15.2", True), ("15.1", False)])
async def test_port_475_greets_as_the_2019_delivery_listener(tmp_path: Path, version: str,
                                                             capitals: bool) -> None:
    text = FAST_LAB_YAML.replace('Version: "15.2"', f'Version: "{version}"')
    assert f'Version: "{version}"' in text
    lab = await start_lab(with_connectors(text, FAST), tmp_path / "data")
    try:
        code, front = await asyncio.to_thread(_greeting, lab.port(25))
        code475, delivery = await asyncio.to_thread(_greeting, lab.port(475))
        assert code == code475 == 220
        assert re.fullmatch(r"ex01\.contoso\.com Microsoft ESMTP MAIL Service ready at .+",
                            front.decode())
        if capitals:  # exchange.md §1.1.1: the whole text in capitals, the host name as it is
            assert re.fullmatch(r"ex01\.contoso\.com MICROSOFT ESMTP MAIL SERVICE READY AT "
                                + DATE, delivery.decode()), delivery
        else:
            assert delivery.split(b" at ")[0] == front.split(b" at ")[0]
    finally:
        await lab.daemon.stop()
