"""The Partner identity across the Front End -> hub hop (exchange.md §4.2, §7.2): a message the
session core accepted from a Domain Security partner, proxied by the real Front End handler to
the real hub listener, lands in alice's Maildir stamped as partner mail."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from exchsim.policy.headers import parse_message
from exchsim.tls.validation import validate_chain
from tests.certfactory import T0, lab_pki
from tests.integration.conftest import FAST, FAST_LAB_YAML, start_lab, with_connectors
from tests.unit.smtp.harness import TLS, Runtime, Transcript

SECURE = FAST_LAB_YAML.replace(
    "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}",
    "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB, "
    "TLSReceiveDomainSecureList: [partner.example]}")


async def test_partner_stamped_by_the_hub_after_the_hop(tmp_path: Path) -> None:
    lab = await start_lab(with_connectors(SECURE, FAST), tmp_path / "data")
    try:
        frontend = lab.daemon.nodes["EX01"].frontend
        assert frontend is not None
        pki = lab_pki()
        leaf = pki.leaf("partner.example")
        chain = pki.chain(leaf)
        verdict = validate_chain(chain, (pki.root.cert,), T0, pki.crls())
        tls = dataclasses.replace(TLS, peer_der=chain[0], peer_chain=tuple(chain),
                                  verdict=verdict)
        t = Transcript(Runtime(lab.lab), 25, peer="127.0.0.88", tls=tls)
        t.say("EHLO mail.partner.example", "STARTTLS")
        t.say("EHLO mail.partner.example")
        t.feed(b"MAIL FROM:<user@partner.example>\r\nRCPT TO:<alice@contoso.com>\r\nDATA\r\n"
               b"From: user@partner.example\r\n"
               b"X-MS-Exchange-Organization-Classification: forged\r\n"
               b"X-MS-Exchange-Organization-AuthAs: Internal\r\n"
               b"Subject: secured\r\n\r\nbody\r\n.\r\n")
        [message] = t.delivered
        reply = await frontend(message)
        assert reply.code == 250, reply.render()
        await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
        headers = parse_message(lab.mailbox("alice@contoso.com")[0])
        assert headers.values("X-MS-Exchange-Organization-AuthAs") == ["Partner"]
        assert headers.values("X-MS-Exchange-Organization-AuthMechanism") == ["02"]
        assert headers.values("X-MS-Exchange-Organization-AuthDomain") == ["partner.example"]
        assert headers.values("X-MS-Exchange-Organization-Classification") == [
            "030e9e2f-134b-4020-861c-5bfc616f113d"]
        frontend.session_closed(message.context.session_id)
    finally:
        await lab.daemon.stop()
