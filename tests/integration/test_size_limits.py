"""The organization's MaxReceiveSize and MaxSendSize (issue 7, finding 3): a message the
receive connector accepts but the organization does not is answered 250 at SMTP time and
NDRed per recipient by the hub (exchange.md §8.3), never delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.conftest import FAST, FAST_LAB_YAML, start_lab, with_connectors
from tests.integration.test_mailflow import send_smtplib

SMALL = FAST_LAB_YAML.replace("TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}",
                              "TransportConfig: {MaxReceiveSize: 1MB, MaxSendSize: 10MB}")


def message(size: int, tag: str) -> str:
    body = ("y" * 998 + "\r\n") * (size // 1000)
    return (f"From: someone@fabrikam.example\r\nTo: alice@contoso.com\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@fabrikam.example>\r\n\r\n{body}")


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
    finally:
        await lab.daemon.stop()
