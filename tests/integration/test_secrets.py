"""No secrets at rest (issue 7, finding 8): credentials never reach the protocol log, and
everything the lab writes is private to its user."""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import ssl
import stat
from pathlib import Path

from tests.integration.conftest import RawClient, RunningLab
from tests.integration.test_mailflow import send_smtplib

HOST = "127.0.10.1"
SECRET = "Tr0ub4dor&3-secret"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_credentials_after_a_refused_auth_are_not_logged(lab: RunningLab) -> None:
    # Default EX01 (2525) logs verbosely in the test lab; AUTH PLAIN is not offered there.
    client = await RawClient.connect(HOST, lab.port(2525))
    await client.reply()
    await client.cmd("EHLO client.example")
    assert await client.cmd("AUTH PLAIN") == "504 5.7.4 Unrecognized authentication type"
    # A client that sends its credentials anyway: two lines that are not commands.
    assert (await client.cmd(b64(f"\0alice@contoso.com\0{SECRET}"))).startswith("500 5.3.3")
    assert (await client.cmd(b64(SECRET))).startswith("500 5.3.3")
    assert await client.cmd("NOOP") == "250 2.0.0 OK"
    assert (await client.cmd("NOTAVERB")).startswith("500 5.3.3")  # logged again: no AUTH
    client.close()
    await lab.wait_for(lambda: "NOTAVERB" in lab.protocol_log())
    log = lab.protocol_log()
    for secret in (b64(SECRET), b64(f"\0alice@contoso.com\0{SECRET}")):
        assert secret.upper() not in log.upper()  # 15.2's reply echoes the verb, upper-cased
    assert log.count("<authentication information>") >= 2


async def test_a_password_typed_as_the_user_name_is_not_logged(lab: RunningLab) -> None:
    # The hub's Default connector (2525) logs verbosely in the test lab and offers AUTH LOGIN
    # once STARTTLS is done.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def attempt() -> None:
        with smtplib.SMTP(HOST, lab.port(2525), timeout=10) as smtp:
            smtp.ehlo("client.example")
            smtp.starttls(context=ctx)
            smtp.ehlo("client.example")
            assert smtp.docmd("AUTH", "LOGIN")[0] == 334
            assert smtp.docmd(b64(SECRET))[0] == 334  # the password, typed as the user name
            assert smtp.docmd(b64("wrong"))[0] == 535

    await asyncio.to_thread(attempt)
    await lab.wait_for(lambda: "LogonDenied" in lab.protocol_log())
    log = lab.protocol_log()
    assert SECRET not in log
    assert "User Name: (not a known logon name)" in log


async def test_everything_the_lab_writes_is_private(lab: RunningLab) -> None:
    sent = await asyncio.to_thread(send_smtplib, lab.port(25), "a@fabrikam.example",
                                   ["alice@contoso.com"], "Subject: private\r\n\r\nbody\r\n")
    assert sent == {}
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    await lab.daemon.stop()
    loose = []
    for root, dirs, files in os.walk(lab.data):
        for name in dirs + files:
            path = Path(root) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if path.suffix in (".crt", ".crl"):
                continue  # certificates and CRLs are public by design (tls/pki.py, tls/labca.py)
            if mode & 0o077:
                loose.append(f"{path.relative_to(lab.data)} {oct(mode)}")
    assert loose == []
