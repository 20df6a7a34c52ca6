"""The partner organization of the lab (configs/partner.yaml, seed 001): PARTNER01
(mail.partner.example, 127.0.10.60) runs beside Contoso in `exchsim lab`, with a certificate
of the lab CA, and accepts mail from contoso.com only as Domain Secured (exchange.md §4.2):
swaks, openssl and Python's ssl present EX01's own lab certificate over real sockets."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchsim.policy.headers import parse_message
from exchsim.tls.issued import issue_certificate, write_out
from exchsim.tls.labca import load_lab_ca
from exchsim.tls.pki import CertificateFiles
from tests.integration.conftest import CONFIGS, SEED001_YAML, RunningLab, fast, start_lab, swaks

PARTNER = "127.0.10.60"
CLASSIFICATION = "030e9e2f-134b-4020-861c-5bfc616f113d"


async def start_seed001(data: Path, text: str = SEED001_YAML) -> RunningLab:
    """configs/single-server.yaml as shipped (its partner file found next to it), retries fast."""
    return await start_lab(fast(text), data, source=str(CONFIGS / "single-server.yaml"))


@pytest.fixture
async def seed001(tmp_path: Path) -> AsyncIterator[RunningLab]:
    lab = await start_seed001(tmp_path / "data")
    try:
        yield lab
    finally:
        await lab.daemon.stop()


def lab_certificate(lab: RunningLab, server: str, name: str) -> CertificateFiles:
    """The ExchsimLabCertificate the lab issued ``server`` (the one naming ``name``)."""
    daemons = [lab.daemon, *lab.daemon.partners]
    node = next(d.nodes[server] for d in daemons if server in d.nodes)
    return next(c for c in node.smtp_certificates if name in c.dns_names)


async def swaks_partner(lab: RunningLab, sender: str, cert: CertificateFiles | None,
                        *extra: str) -> str:
    args = ["--server", f"{PARTNER}:{lab.port(25)}", "--tls", "--from", sender,
            "--to", "user@partner.example", *extra]
    if cert is not None:
        args += ["--tls-cert", str(cert.cert_path), "--tls-key", str(cert.key_path)]
    _, out = await swaks(*args)
    return out


async def test_the_partner_runs_with_certificates_of_the_lab_ca(seed001: RunningLab) -> None:
    lab = seed001
    names = {listener.server for listener in lab.daemon.listeners}
    assert {"EX01", "PARTNER01", "InternetSink", "CrlServer"} <= names
    ex01 = lab_certificate(lab, "EX01", "contoso.com")
    partner = lab_certificate(lab, "PARTNER01", "partner.example")
    issuing = "CN=exchsim Lab Issuing CA, O=exchsim lab"
    assert (ex01.subject, ex01.issuer) == ("CN=mail.contoso.com", issuing)
    assert ex01.dns_names == ("mail.contoso.com", "contoso.com")
    assert (partner.subject, partner.issuer) == ("CN=mail.partner.example", issuing)
    # Python's ssl trusts the lab root alone and checks the name: the partner's STARTTLS
    # certificate is the lab CA's for mail.partner.example and partner.example.
    root = str(lab.data / "pki" / "ca" / "root.crt")

    def handshake(host_name: str) -> str:
        import smtplib
        context = ssl.create_default_context(cafile=root)
        with smtplib.SMTP(PARTNER, lab.port(25), timeout=20) as client:
            client.ehlo("mail.contoso.com")
            client._host = host_name  # type: ignore[attr-defined]  # the name TLS checks
            client.starttls(context=context)
            assert client.sock is not None
            cert = client.sock.getpeercert()  # type: ignore[attr-defined]
            return str(cert["subject"])

    for host_name in ("mail.partner.example", "partner.example"):
        assert "mail.partner.example" in await asyncio.to_thread(handshake, host_name)
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.to_thread(handshake, "fabrikam.example")


async def test_mail_from_contoso_with_ex01s_certificate_is_domain_secured(
        seed001: RunningLab) -> None:
    lab = seed001
    ex01 = lab_certificate(lab, "EX01", "contoso.com")
    out = await swaks_partner(lab, "alice@contoso.com", ex01)
    assert "250 2.6.0" in out and "Hostname=mail.partner.example" in out, out
    await lab.wait_for(lambda: len(lab.mailbox("user@partner.example")) == 1)
    headers = parse_message(lab.mailbox("user@partner.example")[0])
    assert headers.values("X-MS-Exchange-Organization-AuthAs") == ["Partner"]
    assert headers.values("X-MS-Exchange-Organization-AuthMechanism") == ["02"]
    assert headers.values("X-MS-Exchange-Organization-AuthDomain") == ["contoso.com"]
    assert headers.values("X-MS-Exchange-Organization-Classification") == [CLASSIFICATION]
    log = "".join(p.read_text("utf-8") for p in sorted(
        (lab.data / "logs" / "PARTNER01" / "ProtocolLog" / "SmtpReceive").iterdir()))
    assert "Client certificate chain validation status: 'Valid'" in log
    assert "CN=mail.contoso.com" in log


async def test_the_partner_refuses_contoso_without_a_fitting_certificate(
        seed001: RunningLab, tmp_path: Path) -> None:
    lab = seed001
    # No certificate: contoso.com is in the partner's TLSReceiveDomainSecureList.
    out = await swaks_partner(lab, "alice@contoso.com", None, "--quit-after", "MAIL")
    assert "530 5.7.1 Not authenticated" in out, out
    # A certificate of the lab CA for another domain.
    other = issue_certificate(load_lab_ca(lab.data / "pki"), "mail.fabrikam.example",
                              lab.daemon.clock.utc())
    cert, key = write_out(other, tmp_path, "fabrikam")
    _, out = await swaks("--server", f"{PARTNER}:{lab.port(25)}", "--tls", "--from",
                         "alice@contoso.com", "--to", "user@partner.example",
                         "--tls-cert", str(cert), "--tls-key", str(key), "--quit-after", "MAIL")
    assert "454 4.7.5 Certificate validation failure" in out, out
    # openssl s_client with EX01's certificate: accepted at MAIL FROM.
    assert shutil.which("openssl"), "openssl is required: apt-get install -y openssl"
    ex01 = lab_certificate(lab, "EX01", "contoso.com")
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"{PARTNER}:{lab.port(25)}", "-starttls", "smtp",
        "-crlf", "-quiet", "-cert", str(ex01.cert_path), "-key", str(ex01.key_path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    text, _ = await asyncio.wait_for(proc.communicate(
        b"EHLO mail.contoso.com\nMAIL FROM:<alice@contoso.com>\nQUIT\n"), 30)
    assert "250 2.1.0 Sender OK" in text.decode("utf-8", "replace")
    assert lab.mailbox("user@partner.example") == []


async def test_the_lab_certificates_are_issued_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lab = await start_seed001(data)
    first = lab_certificate(lab, "PARTNER01", "partner.example").thumbprint
    await lab.daemon.stop()
    lab = await start_seed001(data)
    try:
        assert lab_certificate(lab, "PARTNER01", "partner.example").thumbprint == first
    finally:
        await lab.daemon.stop()
