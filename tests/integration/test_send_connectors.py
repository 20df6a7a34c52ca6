"""Delivery through send connectors (exchange.md §8.2): DNS routing through the lab's Dns map,
smart hosts with basic authentication, Unreachable, relay to a connector's source server. The
MTAs outside the organization are plain aiosmtpd servers (tests/integration/sendlab.py)."""

from __future__ import annotations

import asyncio
import datetime
import email
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from exchsim.transport.queue import QueuedMessage
from tests.integration.conftest import RunningLab, start_lab
from tests.integration.sendlab import Mta, lab_text, submit

DNS = """
  MX:
    partner.example:
      - {Preference: 20, NameExchange: mx2.partner.example}
      - {Preference: 10, NameExchange: mx1.partner.example}
  A:
    mx1.partner.example: 127.0.10.61
    mx2.partner.example: 127.0.10.62
    smarthost.lab.example: 127.0.10.70
"""

TO_PARTNER = """
  - {Name: To Partner, AddressSpaces: ["partner.example"], Fqdn: out.contoso.com}
"""


async def pending(lab: RunningLab, server: str = "EX01") -> list[QueuedMessage]:
    queue = lab.daemon.queues[server]
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return await queue.due(later, limit=100)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    labs: list[RunningLab] = []
    mtas: list[Mta] = []

    async def make(text: str) -> RunningLab:
        lab = await start_lab(text, tmp_path / "data")
        labs.append(lab)
        return lab

    async def mta(address: str, port: int, **kwargs: object) -> Mta:
        found = await Mta(address, port, **kwargs).start()  # type: ignore[arg-type]
        mtas.append(found)
        return found

    make.mta = mta  # type: ignore[attr-defined]
    yield make
    for found in mtas:
        await found.stop()
    for lab in labs:
        await lab.daemon.stop()


async def test_dns_routed_connector_delivers_to_the_mx_host_of_lowest_preference(
        running) -> None:  # type: ignore[no-untyped-def]
    lab = await running(lab_text(TO_PARTNER, DNS))
    mx1 = await running.mta("127.0.10.61", lab.port(25))
    mx2 = await running.mta("127.0.10.62", lab.port(25))
    await submit(lab.port(587), "bob@partner.example", "via mx")
    await lab.wait_for(lambda: len(mx1.messages) == 1)
    got = mx1.messages[0]
    assert got.rcpt_tos == ["bob@partner.example"] and got.mail_from == "alice@contoso.com"
    assert got.peer == "127.0.10.1"  # from the server's own address
    assert mx1.handler.helo == ["EHLO out.contoso.com"]  # the connector's Fqdn
    parsed = email.message_from_bytes(got.data)
    assert parsed["Subject"] == "via mx"
    assert not [k for k in parsed if k.lower().startswith("x-ms-exchange-organization")]
    assert mx2.messages == []
    assert lab.internet("bob@partner.example") == []


async def test_the_next_mx_takes_it_when_the_first_is_down(running) -> None:  # type: ignore[no-untyped-def]
    connectors = TO_PARTNER.replace("Fqdn: out.contoso.com", "ForceHELO: true")
    lab = await running(lab_text(connectors, DNS))
    mx2 = await running.mta("127.0.10.62", lab.port(25))  # mx1 (preference 10) is down
    await submit(lab.port(587), "bob@partner.example")
    await lab.wait_for(lambda: len(mx2.messages) == 1)
    assert mx2.handler.helo == ["HELO ex01.contoso.com"]
    assert await pending(lab) == []


@pytest.mark.parametrize("refusal", ["502 5.5.2 Error: command not recognized",
                                     "500 Command unrecognized"])
async def test_a_remote_that_refuses_ehlo_gets_helo(running, refusal: str) -> None:  # type: ignore[no-untyped-def]
    """RFC 5321 §3.2 (exchange.md §8.2): a 5xx to EHLO, then HELO, and the message goes."""
    lab = await running(lab_text(TO_PARTNER, DNS))
    mx1 = await running.mta("127.0.10.61", lab.port(25), ehlo_refusal=refusal)
    await submit(lab.port(587), "bob@partner.example", "to an old MTA")
    await lab.wait_for(lambda: len(mx1.messages) == 1)
    assert mx1.handler.helo == ["EHLO out.contoso.com", "HELO out.contoso.com"]
    assert mx1.messages[0].rcpt_tos == ["bob@partner.example"]
    assert await pending(lab) == []


async def test_smart_host_with_basic_auth(running) -> None:  # type: ignore[no-untyped-def]
    connectors = """
  - Name: Via Smarthost
    AddressSpaces: ["*"]
    SmartHosts: [smarthost.lab.example]
    SmartHostAuthMechanism: BasicAuth
    AuthenticationCredential: {UserName: relay, Password: "Relay-P@ss1"}
"""
    lab = await running(lab_text(connectors, DNS))
    smarthost = await running.mta("127.0.10.70", lab.port(25), credentials=("relay", "Relay-P@ss1"))
    await submit(lab.port(587), "someone@fabrikam.example")
    await lab.wait_for(lambda: len(smarthost.messages) == 1)
    got = smarthost.messages[0]
    assert got.auth is not None and got.auth.login == b"relay"
    assert smarthost.handler.helo == ["EHLO ex01.contoso.com"]  # no Fqdn: the server's


async def test_wrong_credentials_keep_the_message_queued_with_the_reply(running) -> None:  # type: ignore[no-untyped-def]
    connectors = """
  - Name: Via Smarthost
    AddressSpaces: ["*"]
    SmartHosts: [smarthost.lab.example]
    SmartHostAuthMechanism: BasicAuth
    AuthenticationCredential: {UserName: relay, Password: wrong}
"""
    lab = await running(lab_text(connectors, DNS))
    smarthost = await running.mta("127.0.10.70", lab.port(25), credentials=("relay", "Relay-P@ss1"))
    await submit(lab.port(587), "someone@fabrikam.example")

    async def deferred() -> list[QueuedMessage]:
        return [m for m in await pending(lab) if m.last_error]

    found: list[QueuedMessage] = []
    for _ in range(200):
        found = await deferred()
        if found:
            break
        await asyncio.sleep(0.05)
    assert found, "not deferred"
    assert "535" in (found[0].last_error or ""), found[0].last_error
    assert smarthost.messages == []


async def test_a_message_over_the_connectors_max_message_size_gets_an_ndr(running) -> None:  # type: ignore[no-untyped-def]
    connectors = TO_PARTNER.replace("Fqdn: out.contoso.com", "MaxMessageSize: 100KB")
    lab = await running(lab_text(connectors, DNS))
    mx1 = await running.mta("127.0.10.61", lab.port(25))
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "alice@contoso.com", "bob@partner.example", "big")
    message.set_content("x" * 200_000)
    await aiosmtplib.send(message, hostname="127.0.10.1", port=lab.port(587), start_tls=True,
                          validate_certs=False, username="alice@contoso.com",
                          password="P@ssw0rd!", timeout=30)
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    ndr = lab.mailbox("alice@contoso.com")[0].decode()
    assert "550 5.3.4 ROUTING.SizeLimit; message size exceeds fixed maximum size for route" in ndr
    assert mx1.messages == []
    # The NDR is queued before the original's recipient is settled: it can arrive first.
    for _ in range(100):
        if not await pending(lab):
            break
        await asyncio.sleep(0.05)
    assert await pending(lab) == []


async def test_a_domain_the_lab_dns_does_not_know_waits_with_exchanges_dns_error(running) -> None:  # type: ignore[no-untyped-def]
    lab = await running(lab_text('  - {Name: To Internet, AddressSpaces: ["*"]}', DNS))
    await submit(lab.port(587), "someone@nowhere.example")
    reasons: list[str | None] = []
    for _ in range(200):
        reasons = [m.last_error for m in await pending(lab)]
        if any(reasons):
            break
        await asyncio.sleep(0.05)
    assert reasons == ["451 4.4.0 DNS query failed. The error was: "
                       "SMTPSEND.DNS.NonExistentDomain; nonexistent domain"], reasons
    assert lab.internet("someone@nowhere.example") == []


async def test_organization_headers_stay_between_ex01_and_ex02_and_never_leave(running) -> None:  # type: ignore[no-untyped-def]
    """One message from alice (EX01) to carol, whose mailbox is on EX02, and to someone at
    fabrikam.example through the lab's internet connector: carol's copy crossed from EX01's hub
    to EX02's Mailbox Transport Delivery and keeps the organization headers (exchange.md §5.1);
    the copy that left the organization has none (exchange.md §12.5)."""
    ex02 = ('  - {Name: EX02, Role: Mailbox, Fqdn: ex02.contoso.com, Address: 127.0.10.2, '
            'Version: "15.2"}')
    carol = ('    - {PrimarySmtpAddress: carol@contoso.com, UserPrincipalName: carol@contoso.com,'
             ' Password: "P@ssw0rd!", Server: EX02}\n')
    text = lab_text(None, extra_servers=ex02)
    text = text.replace("  Mailboxes:\n", "  Mailboxes:\n" + carol, 1)
    lab = await running(text)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "alice@contoso.com", "carol@contoso.com, someone@fabrikam.example", "both ways")
    message.set_content("hello\n")
    await aiosmtplib.send(message, hostname="127.0.10.1", port=lab.port(587), start_tls=True,
                          validate_certs=False, username="alice@contoso.com",
                          password="P@ssw0rd!", timeout=30)
    await lab.wait_for(lambda: len(lab.mailbox("carol@contoso.com")) == 1
                       and len(lab.internet("someone@fabrikam.example")) == 1)
    inside = email.message_from_bytes(lab.mailbox("carol@contoso.com")[0])
    assert inside["X-MS-Exchange-Organization-AuthAs"] == "Internal"
    assert inside["X-MS-Exchange-Organization-AuthSource"] == "ex01.contoso.com"
    assert inside["X-MS-Exchange-Organization-Network-Message-Id"]
    # EX02 delivered it: its Mailbox Transport line names EX02, the hub line before it EX01.
    received = inside.get_all("Received") or []
    assert received[0].startswith("from ex01.contoso.com (127.0.10.1) by ex02.contoso.com "
                                  "(127.0.10.2)"), received[0]
    outside = lab.internet("someone@fabrikam.example")[0].decode()
    assert "X-MS-Exchange-Organization-" not in outside
    assert "Subject: both ways" in outside
