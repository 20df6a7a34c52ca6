"""Most-specific connector match and the two relay recipes of exchange.md §8.1, end to end."""

from __future__ import annotations

import asyncio
import email
import smtplib
from pathlib import Path

from tests.integration.conftest import ROOT, RunningLab, start_lab, swaks, with_connectors

HOST = "127.0.10.1"


def example(name: str) -> str:
    return (ROOT / "configs" / "examples" / name).read_text(encoding="utf-8")


NO_TARPIT = """
  - {Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:00"}
"""


async def banner_from(lab: RunningLab, source: str) -> str:
    rc, out = await swaks("--server", f"{HOST}:{lab.port(25)}", "--local-interface", source,
                          "--quit-after", "EHLO")
    assert rc == 0, out
    return next(line for line in out.splitlines() if line.startswith("<-  220"))


async def test_most_specific_match(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(example("most-specific-match.yaml"), NO_TARPIT),
                          tmp_path / "data")
    try:
        assert "Connector for 127.0.20.75" in await banner_from(lab, "127.0.20.75")
        assert "Connector for 127.0.20.0/24" in await banner_from(lab, "127.0.20.100")
        assert "Microsoft ESMTP MAIL Service ready" in await banner_from(lab, "127.0.0.1")
        log = lab.protocol_log()
        assert "EX01\\Connector for 127.0.20.75" in log or "127.0.20.75" in log
        lines = [line for line in log.splitlines() if ",+," in line]
        connectors = {line.split(",")[1] for line in lines}
        assert len(connectors) == 3, connectors
    finally:
        await lab.daemon.stop()


def send(port: int, source: str, sender: str, rcpt: str | list[str],
         body: str) -> dict[str, object]:
    with smtplib.SMTP(HOST, port, source_address=(source, 0), timeout=15) as client:
        client.ehlo("app.example")
        return client.sendmail(sender, rcpt, body)  # type: ignore[return-value]


async def test_relay_recipes(tmp_path: Path) -> None:
    text = with_connectors(example("relay-recipes.yaml"), NO_TARPIT)
    lab = await start_lab(text, tmp_path / "data")
    try:
        big = "Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 1200  # ~1.2 MB, over 1MB limits
        # Recipe 1: ExternalAuthoritative + ExchangeServers, from 127.0.21.75 only.
        # The copy to bob shows the stamping; the relayed one leaves without organization
        # headers (exchange.md §12.5).
        refused = await asyncio.to_thread(send, lab.port(25), "127.0.21.75", "app@fabrikam.example",
                                          ["ext1@fabrikam.example", "bob@contoso.com"], big)
        assert refused == {}
        await lab.wait_for(lambda: len(lab.internet("ext1@fabrikam.example")) == 1
                           and len(lab.mailbox("bob@contoso.com")) == 1)
        relayed = email.message_from_bytes(lab.internet("ext1@fabrikam.example")[0])
        assert relayed["X-MS-Exchange-Organization-AuthAs"] is None
        stamped = email.message_from_bytes(lab.mailbox("bob@contoso.com")[0])
        assert stamped["X-MS-Exchange-Organization-AuthAs"] == "Internal"
        assert stamped["X-MS-Exchange-Organization-AuthMechanism"] == "10"
        # The next address is not on the connector: Default Frontend, anonymous, no relay.
        rc, out = await swaks("--server", f"{HOST}:{lab.port(25)}", "--local-interface",
                              "127.0.21.76", "--to", "ext1@fabrikam.example", "--quit-after", "RCPT")
        assert "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain" in out
        # Recipe 2: AnonymousUsers + Accept-Any-Recipient relays, the size limit still applies.
        refused = await asyncio.to_thread(send, lab.port(25), "127.0.22.9", "app@fabrikam.example",
                                          ["ext2@fabrikam.example", "alice@contoso.com"],
                                          "Subject: small\r\n\r\nhi\r\n")
        assert refused == {}
        await lab.wait_for(lambda: len(lab.internet("ext2@fabrikam.example")) == 1
                           and len(lab.mailbox("alice@contoso.com")) == 1)
        relayed = email.message_from_bytes(lab.internet("ext2@fabrikam.example")[0])
        assert relayed["X-MS-Exchange-Organization-AuthAs"] is None
        stamped = email.message_from_bytes(lab.mailbox("alice@contoso.com")[0])
        assert stamped["X-MS-Exchange-Organization-AuthAs"] == "Anonymous"
        try:
            await asyncio.to_thread(send, lab.port(25), "127.0.22.9", "app@fabrikam.example",
                                    "ext3@fabrikam.example", big)
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            assert exc.smtp_code == 552
            assert b"5.3.4 Message size exceeds fixed maximum message size" in exc.smtp_error
        else:
            raise AssertionError("the size limit should apply to the anonymous relay")
    finally:
        await lab.daemon.stop()
