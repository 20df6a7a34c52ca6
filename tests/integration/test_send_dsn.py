"""DSN requests passed on by the send connector client (RFC 3461 §6.2.1; exchange.md §12.6):
a remote that advertises DSN gets RET and ENVID on MAIL and NOTIFY and ORCPT on each RCPT as the
queue kept them, and the hub sends no relay DSN; a remote without DSN gets none of them and a
NOTIFY=SUCCESS recipient gets the hub's relay DSN. The same over the intra-organization relay to
a connector's source server, and through the Front End's Outbound Proxy Frontend (717) for a
connector with FrontendProxyEnabled (one transaction per recipient there, exchange.md §7.4). The remotes are aiosmtpd servers that record the parameters
(tests/integration/sendlab.py); the message is submitted with smtplib on 587."""

from __future__ import annotations

import asyncio
import email
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.conftest import RunningLab, start_lab
from tests.integration.sendlab import Mta, lab_text

MX = "127.0.10.61"
DNS = """
  MX:
    partner.example:
      - {Preference: 10, NameExchange: mx1.partner.example}
  A:
    mx1.partner.example: 127.0.10.61
"""
TO_PARTNER = """
  - {Name: To Partner, AddressSpaces: ["partner.example"]SOURCE}
"""
EX02 = '  - {Name: EX02, Role: Mailbox, Fqdn: ex02.contoso.com, Address: 127.0.10.2, Version: "15.2"}'
ORCPT = "ORCPT=rfc822;bob@partner.example"


def _submit(port: int, rcpts: dict[str, list[str]], mail_options: list[str]) -> None:
    with smtplib.SMTP("127.0.10.1", port, local_hostname="client.example", timeout=15) as c:
        c.ehlo()
        c.starttls(context=ssl._create_unverified_context())
        c.ehlo()
        c.login("alice@contoso.com", "P@ssw0rd!")
        assert c.mail("alice@contoso.com", mail_options)[0] == 250
        for rcpt, options in rcpts.items():
            assert c.rcpt(rcpt, options)[0] == 250
        assert c.data(b"From: alice@contoso.com\r\nTo: bob@partner.example\r\n"
                      b"Subject: plans\r\n\r\nthe plans\r\n")[0] == 250


class _Lab:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.lab: RunningLab | None = None
        self.mta: Mta | None = None

    async def start(self, *, dsn: bool, relay: bool = False,
                    frontend: bool = False) -> tuple[RunningLab, Mta]:
        source = ", SourceTransportServers: [EX02]" if relay else ""
        if frontend:
            source += ", FrontendProxyEnabled: true"
        self.lab = await start_lab(
            lab_text(TO_PARTNER.replace("SOURCE", source), DNS,
                     extra_servers=EX02 if relay else ""), self.data)
        self.mta = await Mta(MX, self.lab.port(25), dsn=dsn).start()
        return self.lab, self.mta


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[_Lab]:
    made = _Lab(tmp_path / "data")
    yield made
    if made.mta is not None:
        await made.mta.stop()
    if made.lab is not None:
        await made.lab.daemon.stop()


async def _send(lab: RunningLab) -> None:
    await asyncio.to_thread(
        _submit, lab.port(587),
        {"bob@partner.example": ["NOTIFY=SUCCESS,FAILURE", ORCPT],
         "carol@partner.example": []},
        ["RET=HDRS", "ENVID=QQ314159"])


def _subjects(lab: RunningLab) -> list[str]:
    return [str(email.message_from_bytes(m)["Subject"]) for m in lab.mailbox("alice@contoso.com")]


PATHS = pytest.mark.parametrize(("relay", "frontend"), [(False, False), (True, False),
                                                       (False, True)],
                                 ids=["own-connector", "via-source-server", "via-frontend-717"])
MAIL = ("MAIL", "FROM:<alice@contoso.com>", ["RET=HDRS", "ENVID=QQ314159"])
BOB = ("RCPT", "TO:<bob@partner.example>", ["NOTIFY=SUCCESS,FAILURE", ORCPT])
CAROL = ("RCPT", "TO:<carol@partner.example>", [])


@PATHS
async def test_a_remote_with_dsn_gets_the_request_and_the_hub_sends_no_relay_dsn(
        harness: _Lab, relay: bool, frontend: bool) -> None:
    lab, mta = await harness.start(dsn=True, relay=relay, frontend=frontend)
    await _send(lab)
    copies = 2 if frontend else 1  # the Front End sends one transaction per recipient
    await lab.wait_for(lambda: len(mta.messages) == copies)
    if relay:
        assert mta.messages[0].peer == "127.0.10.2"  # EX02 sent it out
    # The DSN parameters each command carried, as sent.
    assert mta.commands == ([MAIL, BOB, MAIL, CAROL] if frontend else [MAIL, BOB, CAROL])
    await asyncio.sleep(1.5)  # a relay DSN would be in alice's mailbox by now
    assert _subjects(lab) == []


@PATHS
async def test_a_remote_without_dsn_gets_nothing_and_success_is_a_relay_dsn(
        harness: _Lab, relay: bool, frontend: bool) -> None:
    lab, mta = await harness.start(dsn=False, relay=relay, frontend=frontend)
    await _send(lab)
    copies = 2 if frontend else 1
    await lab.wait_for(lambda: len(mta.messages) == copies)
    assert [params for _, _, params in mta.commands] == [[]] * (2 * copies + (not frontend)), (
        mta.commands)
    await lab.wait_for(lambda: _subjects(lab) == ["Relayed: plans"])
    await asyncio.sleep(1.0)
    assert _subjects(lab) == ["Relayed: plans"]  # one, not one from each hub


async def test_a_remote_whose_own_reply_ends_with_the_front_ends_marker_still_gets_a_relay_dsn(
        harness: _Lab) -> None:
    """The Front End's ``X-DSN-PASSED-ON`` line is its own: a remote without DSN whose reply
    to the data ends with that line (policy/replies.py) does not make the hub believe the
    request went on, so bob's NOTIFY=SUCCESS still gets the hub's relay DSN."""
    lab, mta = await harness.start(dsn=False, frontend=True)
    handler = mta.handler

    async def marked(server: object, session: object, envelope: object) -> str:
        await type(handler).handle_DATA(handler, server, session, envelope)  # type: ignore[arg-type]
        return "250-2.0.0 OK queued\r\n250 X-DSN-PASSED-ON"
    handler.handle_DATA = marked  # type: ignore[method-assign]
    await _send(lab)
    await lab.wait_for(lambda: len(mta.messages) == 2)
    await lab.wait_for(lambda: _subjects(lab) == ["Relayed: plans"])
