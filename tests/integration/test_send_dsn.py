"""DSN requests passed on by the send connector client (RFC 3461 §6.2.1; exchange.md §12.6):
a remote that advertises DSN gets RET and ENVID on MAIL and NOTIFY and ORCPT on each RCPT as the
queue kept them, and the hub sends no relay DSN; a remote without DSN gets none of them and a
NOTIFY=SUCCESS recipient gets the hub's relay DSN. The same over the intra-organization relay to
a connector's source server. The remotes are aiosmtpd servers that record the parameters
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

    async def start(self, *, dsn: bool, relay: bool = False) -> tuple[RunningLab, Mta]:
        source = ", SourceTransportServers: [EX02]" if relay else ""
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


@pytest.mark.parametrize("relay", [False, True], ids=["own-connector", "via-source-server"])
async def test_a_remote_with_dsn_gets_the_request_and_the_hub_sends_no_relay_dsn(
        harness: _Lab, relay: bool) -> None:
    lab, mta = await harness.start(dsn=True, relay=relay)
    await _send(lab)
    await lab.wait_for(lambda: len(mta.messages) == 1)
    if relay:
        assert mta.messages[0].peer == "127.0.10.2"  # EX02 sent it out
    assert mta.commands == [  # the DSN parameters each command carried, as sent
        ("MAIL", "FROM:<alice@contoso.com>", ["RET=HDRS", "ENVID=QQ314159"]),
        ("RCPT", "TO:<bob@partner.example>", ["NOTIFY=SUCCESS,FAILURE", ORCPT]),
        ("RCPT", "TO:<carol@partner.example>", []),
    ]
    await asyncio.sleep(1.5)  # a relay DSN would be in alice's mailbox by now
    assert _subjects(lab) == []


@pytest.mark.parametrize("relay", [False, True], ids=["own-connector", "via-source-server"])
async def test_a_remote_without_dsn_gets_nothing_and_success_is_a_relay_dsn(
        harness: _Lab, relay: bool) -> None:
    lab, mta = await harness.start(dsn=False, relay=relay)
    await _send(lab)
    await lab.wait_for(lambda: len(mta.messages) == 1)
    assert [params for _, _, params in mta.commands] == [[], [], []], mta.commands
    await lab.wait_for(lambda: _subjects(lab) == ["Relayed: plans"])
    await asyncio.sleep(1.0)
    assert _subjects(lab) == ["Relayed: plans"]  # one, not one from each hub
