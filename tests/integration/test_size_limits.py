"""The organization's MaxReceiveSize and MaxSendSize (issue 7, finding 3): a message the
receive connector accepts but the organization does not is answered 250 at SMTP time and
NDRed per recipient by the hub (exchange.md §8.3), never delivered."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

from tests.integration.conftest import FAST, FAST_LAB_YAML, start_lab, with_connectors
from tests.integration.test_mailflow import HOST, send_smtplib
from tests.integration.test_tracking import read_events

SMALL = FAST_LAB_YAML.replace("TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}",
                              "TransportConfig: {MaxReceiveSize: 1MB, MaxSendSize: 10MB}")


def message(size: int, tag: str) -> str:
    body = ("y" * 998 + "\r\n") * (size // 1000)
    return (f"From: someone@fabrikam.example\r\nTo: alice@contoso.com\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@fabrikam.example>\r\n\r\n{body}")


def _send_never(port: int) -> None:
    with smtplib.SMTP(HOST, port, local_hostname="client.example", timeout=15) as client:
        client.ehlo()
        client.mail("never@fabrikam.example")
        assert client.rcpt("alice@contoso.com", ["NOTIFY=NEVER"])[0] == 250
        assert client.data(message(1_500_000, "never").encode())[0] == 250


async def test_a_message_over_max_receive_size_is_ndred_not_delivered(tmp_path: Path) -> None:
    assert SMALL != FAST_LAB_YAML
    lab = await start_lab(with_connectors(SMALL, FAST), tmp_path / "data")
    try:
        # 1.5 MB: within the Front End's MaxMessageSize (36 MB), over MaxReceiveSize (1 MB).
        result = await asyncio.to_thread(send_smtplib, lab.port(25), "someone@fabrikam.example",
                                         ["alice@contoso.com"], message(1_500_000, "big"))
        assert result == {}
        small = await asyncio.to_thread(send_smtplib, lab.port(25), "someone@fabrikam.example",
                                        ["alice@contoso.com"], message(10_000, "small"))
        assert small == {}
        await lab.wait_for(lambda: len(lab.internet("someone@fabrikam.example")) == 1)
        await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
        ndr = lab.internet("someone@fabrikam.example")[0]
        assert b"550 5.2.3 RESOLVER.RST.RecipSizeLimit; message too large for this recipient" in ndr
        assert b"Subject: big" in ndr  # the original headers are attached
        assert b"Subject: small" in lab.mailbox("alice@contoso.com")[0]
        await asyncio.sleep(0.5)
        assert len(lab.mailbox("alice@contoso.com")) == 1  # the big one never arrives
        assert await lab.daemon.queues["EX01"].pending_count() == 0
        # The tracking log: FAIL for the refused recipient (the categorizer's: ROUTING), then
        # the DSN event of its NDR referring to it (exchange.md §6.2).
        events = read_events(lab.data)
        [fail] = [e for e in events if e["event-id"] == "FAIL"]
        assert (fail["source"], fail["recipient-address"], fail["message-id"]) == (
            "ROUTING", "alice@contoso.com", "<big@fabrikam.example>")
        assert fail["recipient-status"] == ("550 5.2.3 RESOLVER.RST.RecipSizeLimit; message too "
                                            "large for this recipient")
        assert fail["sender-address"] == "someone@fabrikam.example"
        [dsn] = [e for e in events if e["event-id"] == "DSN"]
        assert (dsn["source"], dsn["recipient-address"], dsn["related-recipient-address"],
                dsn["reference"]) == ("DSN", "someone@fabrikam.example", "alice@contoso.com",
                                      "<big@fabrikam.example>")
        # NOTIFY=NEVER: the recipient is refused all the same (FAIL), without an NDR.
        await asyncio.to_thread(_send_never, lab.port(25))
        await lab.wait_for(lambda: sum(e["event-id"] == "FAIL" for e in read_events(lab.data))
                           == 2)
        await asyncio.sleep(0.5)
        assert lab.internet("never@fabrikam.example") == []
        assert sum(e["event-id"] == "DSN" for e in read_events(lab.data)) == 1
    finally:
        await lab.daemon.stop()
