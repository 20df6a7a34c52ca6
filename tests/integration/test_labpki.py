"""The lab PKI with the lab running: a lab-issued certificate enabled for EX01's SMTP is what
STARTTLS presents on the connector whose Fqdn it names (exchange.md §4.5), from the moment it is
enabled and after a restart, and the CRL distribution point answers over HTTP with what
``exchsim pki revoke`` just published."""

from __future__ import annotations

import asyncio
import shutil
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from exchsim.clock import SYSTEM_CLOCK
from exchsim.daemon import LabDaemon
from exchsim.tls.crlhttp import CrlFetcher, distribution_points
from exchsim.tls.labca import ensure_lab_ca
from tests.integration.conftest import FAST, FAST_LAB_YAML, RawClient, start_lab, with_connectors
from tests.integration.test_pki_cli import field, pki

HOST = "127.0.10.1"
FQDN = "mail.contoso.com"  # Default Frontend EX01's Fqdn here: no setup certificate names it
CONNECTORS = FAST.replace(
    "  - {Name: Default Frontend EX01, Server: EX01, ",
    f"  - {{Name: Default Frontend EX01, Server: EX01, Fqdn: {FQDN}, ")


async def ehlo_keywords(port: int) -> list[str]:
    client = await RawClient.connect(HOST, port)
    try:
        await client.reply()
        client.writer.write(b"EHLO client.example\r\n")
        return [line[4:] for line in (await client.reply()).splitlines()[1:]]
    finally:
        client.writer.close()


async def s_client(port: int, cafile: Path | None, name: str) -> tuple[int, str]:
    assert shutil.which("openssl"), "openssl is required: apt-get install -y openssl"
    verify = ["-CAfile", str(cafile), "-verify_hostname", name, "-verify_return_error"] \
        if cafile else []
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"{HOST}:{port}", "-starttls", "smtp",
        "-name", "client.example", *verify, "-crlf", "-quiet",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(b"QUIT\n"), 30)
    return proc.returncode or 0, out.decode("utf-8", "replace")


def urllib_crl(url: str) -> x509.CertificateRevocationList:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/pkix-crl"
        return x509.load_der_x509_crl(response.read())


async def test_issued_certificate_on_starttls_and_its_crl(tmp_path: Path) -> None:
    text = with_connectors(FAST_LAB_YAML, CONNECTORS)
    config = tmp_path / "lab.yaml"
    config.write_text(text, encoding="utf-8")
    data = tmp_path / "data"
    running = await start_lab(text, data)
    offset = running.offset
    try:
        lab_ca = running.daemon.lab_ca
        assert lab_ca is not None  # made on the lab's first start
        root_pem = lab_ca.root_path.read_bytes()
        # Nothing names mail.contoso.com yet: no STARTTLS on 25; 587 keeps the setup one.
        assert "STARTTLS" not in await ehlo_keywords(25 + offset)
        assert "STARTTLS" in await ehlo_keywords(587 + offset)
        code, issued, err = await pki("issue", "--data", str(data), "--name", FQDN,
                                      "--out", str(tmp_path / "out"))
        assert code == 0, err
        code, _, err = await pki("enable", "--data", str(data), "--config", str(config),
                                 "--server", "EX01", "--thumbprint",
                                 field(issued, "thumbprint"), "--services", "SMTP")
        assert code == 0, err
        # The running lab reads the store again: STARTTLS on 25 within a few seconds.
        for _ in range(50):
            if "STARTTLS" in await ehlo_keywords(25 + offset):
                break
            await asyncio.sleep(0.1)
        code, out = await s_client(25 + offset, lab_ca.root_path, FQDN)
        assert code == 0 and f"depth=0 CN = {FQDN}" in out, out
    finally:
        await running.daemon.stop()

    daemon = LabDaemon(running.lab, data, port_offset=offset)  # the next start keeps it
    await daemon.start()
    try:
        assert daemon.lab_ca is not None and daemon.lab_ca.root_path.read_bytes() == root_pem
        root = daemon.lab_ca.root_path
        code, out = await s_client(25 + offset, root, FQDN)
        assert code == 0, out
        assert f"depth=0 CN = {FQDN}" in out and "depth=2 O = exchsim lab" in out, out
        code, out = await s_client(587 + offset, None, "")
        assert "depth=0 CN = EX01" in out, out  # Client Frontend: ex01.contoso.com, setup's

        leaf = x509.load_pem_x509_certificate((tmp_path / "out" / f"{FQDN}.pem").read_bytes())
        (url,) = distribution_points(leaf)
        assert url == f"http://127.0.10.251:{80 + offset}/crl/issuing.crl"
        async with CrlFetcher(SYSTEM_CLOCK, timeout=5) as cached:
            before = await cached.fetch(url)
            assert before.get_revoked_certificate_by_serial_number(leaf.serial_number) is None
            code, _, err = await pki("revoke", "--data", str(data), "--name", FQDN)
            assert code == 0, err
            # The cache keeps a CRL until its nextUpdate; a new fetcher asks the server.
            assert await cached.fetch(url) is before
        async with CrlFetcher(SYSTEM_CLOCK, timeout=5) as fresh:
            after = await fresh.fetch(url)
        assert after.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
        by_urllib = await asyncio.to_thread(urllib_crl, url)
        assert by_urllib.get_revoked_certificate_by_serial_number(leaf.serial_number)
        root_crl = await asyncio.to_thread(urllib_crl, daemon.lab_ca.crl_url("root"))
        assert len(root_crl) == 0
    finally:
        await daemon.stop()


async def test_a_lab_ca_made_for_another_crl_url_is_kept_and_named(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    made = await asyncio.to_thread(ensure_lab_ca, data / "pki", SYSTEM_CLOCK.utc(),
                                   crl_base_url="http://127.0.10.251:80")
    running = await start_lab(with_connectors(FAST_LAB_YAML, FAST), data)
    try:
        assert running.daemon.lab_ca is not None
        assert running.daemon.lab_ca.root_path.read_bytes() == made.root_path.read_bytes()
        served = f"http://127.0.10.251:{80 + running.offset}"
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("http://127.0.10.251:80" in w and served in w for w in warnings), warnings
        # The CRLs are served all the same, where this run listens.
        crl = await asyncio.to_thread(urllib_crl, f"{served}/crl/issuing.crl")
        assert crl.issuer == made.issuing.cert.subject
    finally:
        await running.daemon.stop()
