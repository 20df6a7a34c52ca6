"""Inbound Domain Security on EX01:25 over real sockets (exchange.md §4.2, §4.8): swaks
(--tls-cert / --tls-key), openssl s_client and Python's ssl present real certificates issued by
a CA the lab trusts (DATA/pki/trusted/), with CRLs served on loopback."""

from __future__ import annotations

import asyncio
import datetime
import re
import shutil
import smtplib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchsim.policy.headers import parse_message
from tests.certfactory import (
    DAY,
    Issued,
    LabPki,
    black_hole,
    http_server,
    lab_pki,
    make_ca,
    make_leaf,
)
from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RunningLab,
    start_lab,
    swaks,
    with_connectors,
)

HOST = "127.0.10.1"
SECURE = FAST_LAB_YAML.replace(
    "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}",
    "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB, "
    "TLSReceiveDomainSecureList: [partner.example]}")
ACCEPTED = "250 2.1.0 Sender OK"
NOT_AUTHENTICATED = "530 5.7.1 Not authenticated"
VALIDATION_FAILURE = "454 4.7.5 Certificate validation failure"
CLASSIFICATION = "030e9e2f-134b-4020-861c-5bfc616f113d"


@dataclass
class Partner:
    lab: RunningLab
    pki: LabPki
    bodies: dict[str, bytes]
    certs: Path

    def files(self, leaf: Issued, name: str, *, chain: bool = True) -> tuple[Path, Path]:
        cert, key = self.pki.write_client(leaf, self.certs, name)
        if not chain:
            cert.write_bytes(leaf.pem)
        return cert, key


async def _lab(tmp_path: Path, pki: LabPki, text: str) -> RunningLab:
    trusted = tmp_path / "data" / "pki" / "trusted"
    trusted.mkdir(parents=True)
    (trusted / "lab-root.pem").write_bytes(pki.root.pem)
    known = trusted.parent / "intermediate"  # swaks presents only its leaf
    known.mkdir(exist_ok=True)
    (known / "lab-issuing.pem").write_bytes(pki.intermediate.pem)
    return await start_lab(text, tmp_path / "data")


@pytest.fixture
async def partner(tmp_path: Path) -> AsyncIterator[Partner]:
    bodies: dict[str, bytes] = {}
    async with http_server(bodies) as port:
        pki = lab_pki(f"http://127.0.0.1:{port}/crl")
        crls = pki.current_crls()
        bodies["/crl/issuing.crl"] = crls[pki.crl_url] or b""
        bodies["/crl/root.crl"] = crls[pki.root_crl_url] or b""
        lab = await _lab(tmp_path, pki, with_connectors(SECURE, FAST))
        certs = tmp_path / "certs"
        certs.mkdir()
        try:
            yield Partner(lab, pki, bodies, certs)
        finally:
            await lab.daemon.stop()


async def swaks_mail(lab: RunningLab, sender: str, cert: Path | None = None,
                     key: Path | None = None, *, body: bool = False) -> str:
    args = ["--server", f"{HOST}:{lab.port(25)}", "--tls", "--from", sender,
            "--to", "alice@contoso.com"]
    if cert is not None and key is not None:
        args += ["--tls-cert", str(cert), "--tls-key", str(key)]
    if not body:
        args += ["--quit-after", "MAIL"]
    _, out = await swaks(*args)
    return out


def python_mail(lab: RunningLab, sender: str, cert: Path | None, key: Path | None) -> str:
    """Python's ssl (smtplib): STARTTLS with a client certificate, then MAIL FROM."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    with smtplib.SMTP(HOST, lab.port(25), timeout=20) as client:
        client.ehlo("partner.example")
        client.starttls(context=context)
        client.ehlo("partner.example")
        code, text = client.mail(sender)
        return f"{code} {text.decode()}"


async def openssl_mail(lab: RunningLab, sender: str, cert: Path | None,
                       key: Path | None) -> str:
    assert shutil.which("openssl"), "openssl is required: apt-get install -y openssl"
    args = ["openssl", "s_client", "-connect", f"{HOST}:{lab.port(25)}", "-starttls", "smtp",
            "-name", "partner.example", "-crlf", "-quiet", "-tls1_2"]
    if cert is not None and key is not None:
        args += ["-cert", str(cert), "-key", str(key)]
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(
        proc.communicate(f"EHLO partner.example\nMAIL FROM:<{sender}>\nQUIT\n".encode()), 30)
    return out.decode("utf-8", "replace")


async def every_client(p: Partner, sender: str, leaf: Issued | None, expected: str) -> None:
    cert = key = None
    if leaf is not None:
        cert, key = p.files(leaf, "client")
    out = await swaks_mail(p.lab, sender, cert, key)
    assert expected in out, ("swaks", out)
    out = await asyncio.to_thread(python_mail, p.lab, sender, cert, key)
    assert out.startswith(expected), ("python", out)
    out = await openssl_mail(p.lab, sender, cert, key)
    assert expected in out, ("openssl", out)


async def test_valid_partner_certificate_is_stamped_as_partner(partner: Partner) -> None:
    leaf = partner.pki.leaf_now("mail.partner.example",
                    sans=["mail.partner.example", "partner.example"])
    cert, key = partner.files(leaf, "partner")
    out = await swaks_mail(partner.lab, "user@partner.example", cert, key, body=True)
    assert "250 2.6.0" in out, partner.lab.protocol_log()[-3000:]
    await partner.lab.wait_for(lambda: len(partner.lab.mailbox("alice@contoso.com")) == 1)
    headers = parse_message(partner.lab.mailbox("alice@contoso.com")[0])
    assert headers.values("X-MS-Exchange-Organization-AuthAs") == ["Partner"]
    assert headers.values("X-MS-Exchange-Organization-AuthMechanism") == ["02"]
    assert headers.values("X-MS-Exchange-Organization-AuthDomain") == ["partner.example"]
    assert headers.values("X-MS-Exchange-Organization-Classification") == [CLASSIFICATION]
    log = partner.lab.protocol_log()
    assert "Client certificate chain validation status: 'Valid'" in log
    assert re.search(r",\*, CN=\S+ CN=.*,Remote certificate Subject Issuer name", log)
    await every_client(partner, "user@partner.example", leaf, ACCEPTED)


async def test_no_certificate(partner: Partner) -> None:
    await every_client(partner, "user@partner.example", None, NOT_AUTHENTICATED)
    assert "Client certificate chain validation status: 'EmptyCertificate'" in (
        partner.lab.protocol_log())


@pytest.mark.parametrize("case", ["expired", "revoked", "untrusted", "wrong-name"])
async def test_bad_certificates(partner: Partner, case: str) -> None:
    pki = partner.pki
    if case == "expired":
        real = datetime.datetime.now(datetime.UTC)
        leaf = pki.leaf("partner.example", not_before=real - 60 * DAY, not_after=real - DAY)
    elif case == "revoked":
        leaf = pki.leaf_now("partner.example")
        partner.bodies["/crl/issuing.crl"] = pki.current_crls([leaf])[pki.crl_url] or b""
    elif case == "untrusted":
        other = make_ca("Nobody Trusts This CA", slot=3)
        leaf = make_leaf(other, "partner.example")
    else:
        leaf = pki.leaf_now("mail.fabrikam.example")
    await every_client(partner, "user@partner.example", leaf, VALIDATION_FAILURE)
    # A sender outside the list is not concerned by the same certificate.
    await every_client(partner, "someone@fabrikam.example", leaf, ACCEPTED)


async def test_other_domains_with_self_signed_certificates(partner: Partner) -> None:
    leaf = make_leaf(None, "mx.fabrikam.example")
    cert, key = partner.files(leaf, "self", chain=False)
    out = await swaks_mail(partner.lab, "someone@fabrikam.example", cert, key, body=True)
    assert "250 2.6.0" in out, out
    assert "Client certificate chain validation status: 'UntrustedRoot'" in (
        partner.lab.protocol_log())


@pytest.mark.parametrize("when_offline", ["Fail", "Accept"])
async def test_a_distribution_point_that_never_answers(tmp_path: Path, when_offline: str) -> None:
    async with black_hole() as port:
        pki = lab_pki(f"http://127.0.0.1:{port}/crl")
        text = with_connectors(SECURE, FAST).replace(
            "  InternetSink: {Address: 127.0.10.250, Port: 25}",
            "  InternetSink: {Address: 127.0.10.250, Port: 25}\n"
            f'  CrlRetrievalTimeout: "00:00:01"\n  WhenRevocationOffline: {when_offline}')
        lab = await _lab(tmp_path, pki, text)
        try:
            leaf = pki.leaf_now("partner.example")
            certs = tmp_path / "certs"
            certs.mkdir()
            cert, key = pki.write_client(leaf, certs, "partner")
            started = time.monotonic()
            out = await swaks_mail(lab, "user@partner.example", cert, key)
            took = time.monotonic() - started
            expected = VALIDATION_FAILURE if when_offline == "Fail" else ACCEPTED
            assert expected in out, out
            assert took < 5, took  # one second for the CRLs, the rest is swaks
            status = "RevocationOffline" if when_offline == "Fail" else "Valid"
            assert f"Client certificate chain validation status: '{status}'" in lab.protocol_log()
        finally:
            await lab.daemon.stop()


