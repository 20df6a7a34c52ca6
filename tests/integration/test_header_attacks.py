"""Header attacks of issue 7 over real sockets: the firewall bypass by parser difference
(finding 7) and a From header that nests 5,000 deep (finding 6, headers)."""

from __future__ import annotations

import asyncio
import email
import email.errors
import email.policy
import logging

import pytest

from tests.integration.conftest import RawClient, RunningLab

HOST = "127.0.10.1"
STAMPED = {  # what the hub and mailbox delivery write for an anonymous message (exchange.md §12.2)
    "x-ms-exchange-organization-authsource", "x-ms-exchange-organization-authas",
    "x-ms-exchange-organization-network-message-id",
    "x-ms-exchange-organization-avstamp-enterprise",
    "x-ms-exchange-transport-endtoendlatency", "x-ms-exchange-processed-by-bccfoldering",
}
SPOOFS = [
    # The example: WSP before the colon, then well-formed organization headers.
    b"From: a@fabrikam.example\r\nX-MS-Exchange-Organization-Foo : SPOOFED\r\n"
    b"X-MS-Exchange-Organization-AuthAs: Internal SPOOFED\r\n"
    b"X-MS-Exchange-Forest-Bar: SPOOFED\r\nSubject: one\r\n\r\nbody\r\n",
    b"From: a@fabrikam.example\r\nx-ms-exchange-organization-scl\t:\r\n -1 SPOOFED\r\n"
    b"Subject: two\r\n\r\nbody\r\n",
    # A junk line inside the header block, then organization headers.
    b"From: a@fabrikam.example\r\nthis line has no colon\r\n"
    b"X-MS-Exchange-Organization-AuthAs: Internal SPOOFED\r\n\r\nbody\r\n",
    b"From: a@fabrikam.example\r\n: a colon first\r\nX-MS-Exchange-Organization-AuthAs: SPOOFED\r\n",
    b"From: a@fabrikam.example\r\nNa\xc3\xafve: x\r\nX-MS-Exchange-Organization-AuthAs: SPOOFED\r\n",
    # A continuation line first: it must not fold into a header a server stamps.
    b" X-MS-Exchange-Organization-AuthAs: SPOOFED\r\nX-MS-Exchange-Organization-SCL: SPOOFED\r\n",
    # Bare line endings (the session rewrites them to CRLF).
    b"From: a@fabrikam.example\nX-MS-Exchange-Organization-AuthAs : SPOOFED\n\nbody\r\n",
    b"From: a@fabrikam.example\rjunk\rX-MS-Exchange-Organization-AuthAs: SPOOFED\r\r\nbody\r\n",
]


async def send(client: RawClient, data: bytes) -> str:
    assert (await client.cmd("MAIL FROM:<a@fabrikam.example>")).startswith("250")
    assert (await client.cmd("RCPT TO:<alice@contoso.com>")).startswith("250")
    assert (await client.cmd("DATA")).startswith("354")
    await client.send(data + b".\r\n")
    return await client.reply()


async def test_no_client_organization_header_reaches_a_maildir(lab: RunningLab) -> None:
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    for data in SPOOFS:
        assert (await send(client, data)).startswith("250 2.6.0"), data
    await client.cmd("QUIT")
    client.close()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == len(SPOOFS))
    for stored in lab.mailbox("alice@contoso.com"):
        head, sep, _ = stored.partition(b"\r\n\r\n")
        assert sep and b"SPOOFED" not in head, stored
        for policy in (email.policy.compat32, email.policy.default):
            msg = email.message_from_bytes(stored, policy=policy)
            org = {k.lower() for k in msg if k.lower().startswith("x-ms-exchange-")}
            assert org == STAMPED, stored
            assert msg["X-MS-Exchange-Organization-AuthAs"] == "Anonymous"
            assert not [d for d in msg.defects
                        if isinstance(d, email.errors.MissingHeaderBodySeparatorDefect)]


def deep_from(inner: str, opener: str) -> bytes:
    """A From header nesting 5,000 deep, folded into lines under 1,000 octets."""
    value = opener * 5000 + inner
    lines = [value[i : i + 900] for i in range(0, len(value), 900)]
    return ("From: " + "\r\n ".join(lines) + "\r\n").encode()


@pytest.mark.parametrize("header", [
    deep_from("a@fabrikam.example", "("),
    deep_from("ceo@contoso.com", "("),
    deep_from("a@fabrikam.example" + ";" * 5000, "g:"),
], ids=["comments", "comments-internal-sender", "groups"])
async def test_a_deeply_nested_from_gets_a_proper_reply_and_no_log_flood(
    lab: RunningLab, header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await RawClient.connect(HOST, lab.port(25))
    await client.reply()
    await client.cmd("EHLO client.example")
    reply = await send(client, header + b"Subject: deep\r\n\r\nbody\r\n")
    # Anonymous users on Default Frontend may send as any sender (exchange.md §3.6).
    assert reply.startswith("250 2.6.0"), reply
    await client.cmd("QUIT")
    client.close()
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    await asyncio.sleep(0.2)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert len(problems) <= 1, [r.getMessage() for r in problems]
    assert sum(len(r.getMessage()) for r in caplog.records) < 20_000
