"""What TLS tools see on 25 and 587: Windows Server 2016/2019's Schannel (exchange.md §4.6).

Real clients nobody here wrote: sslscan and openssl s_client (Debian packages), Python's ssl
and smtplib, swaks; real certificates (the setup-style one, and a random self-signed client
certificate made with trustme).
"""

from __future__ import annotations

import asyncio
import datetime
import re
import smtplib
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchsim.policy.schannel import SUITES
from tests.integration.conftest import (
    FAST,
    FAST_LAB_YAML,
    RunningLab,
    start_lab,
    swaks,
    with_connectors,
)

HOST = "127.0.10.1"
# What an RSA certificate can negotiate, in Schannel's order (exchange.md §4.6).
RSA_SUITES = [s.openssl for s in SUITES if "ECDSA" not in s.iana]


async def run(*argv: str, stdin: bytes = b"", timeout: float = 60.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode or 0, out.decode("utf-8", "replace")


async def s_client(lab: RunningLab, port: int, *options: str) -> tuple[int, str]:
    return await run("openssl", "s_client", "-connect", f"{HOST}:{lab.port(port)}",
                     "-starttls", "smtp", *options, stdin=b"QUIT\n", timeout=20)


def negotiated(text: str) -> tuple[str, str] | None:
    found = re.search(r"^New, (\S+), Cipher is (\S+)$", text, re.M)
    if found is None or found.group(1) == "(NONE)":
        return None
    return found.group(1), found.group(2)


@pytest.mark.parametrize("port", [25, 587])
async def test_sslscan_sees_tls_1_2_windows_suites_in_order_groups_and_rsa_2048(
        lab: RunningLab, port: int) -> None:
    code, text = await run("sslscan", "--no-colour", "--starttls-smtp",
                           f"{HOST}:{lab.port(port)}")
    assert code == 0, text
    protocols = dict(re.findall(r"^(SSLv\d|TLSv1\.\d)\s+(enabled|disabled)$", text, re.M))
    assert protocols == {"SSLv2": "disabled", "SSLv3": "disabled", "TLSv1.0": "disabled",
                         "TLSv1.1": "disabled", "TLSv1.2": "enabled", "TLSv1.3": "disabled"}
    accepted = re.findall(r"^(Preferred|Accepted)\s+(TLSv1\.\d)\s+\d+ bits\s+(\S+)", text, re.M)
    # sslscan lists the suites in the server's order of preference
    assert [name for _, _, name in accepted] == RSA_SUITES
    assert accepted[0][0] == "Preferred"
    assert {version for _, version, _ in accepted} == {"TLSv1.2"}
    assert "CHACHA20" not in text and "ECDSA" not in text
    assert "DHE 2048 bits" in text
    groups = re.findall(r"^TLSv1\.2\s+\d+ bits\s+(\S+)", text.split("Server Key Exchange")[1],
                        re.M)
    assert sorted(groups) == ["secp256r1", "secp384r1", "x25519"]
    assert "Session renegotiation not supported" in text
    assert "Signature Algorithm: sha256WithRSAEncryption" in text
    assert "RSA Key Strength:    2048" in text
    assert "Altnames: DNS:EX01, DNS:ex01.contoso.com" in text


async def test_openssl_s_client_negotiates_tls_1_2_and_windows_groups(lab: RunningLab) -> None:
    # a TLS-1.3-capable client: TLS 1.2, the server's first suite, curve25519 first
    code, text = await s_client(lab, 25, "-tlsextdebug", "-msg")
    assert negotiated(text) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384"), text
    assert "Server Temp Key: X25519" in text
    extensions = set(re.findall(r'TLS server extension "([^"]+)"', text))
    # no session ticket (Schannel caches session ids), no encrypt-then-mac
    assert extensions == {"renegotiation info", "EC point formats", "extended master secret"}
    assert "CertificateRequest" in text  # a client certificate is requested on STARTTLS

    code, text = await s_client(lab, 587, "-tls1_3")
    assert negotiated(text) is None
    # each of Windows' groups is taken; X448 and P-521 are not
    for group, seen in (("P-256", "ECDH, prime256v1"), ("P-384", "ECDH, secp384r1")):
        code, text = await s_client(lab, 587, "-groups", group, "-cipher", "ECDHE")
        assert f"Server Temp Key: {seen}" in text, text
    for group in ("X448", "P-521", "ffdhe2048"):
        code, text = await s_client(lab, 587, "-groups", group, "-cipher", "ECDHE")
        assert negotiated(text) is None, (group, text)
    code, text = await s_client(lab, 25, "-cipher", "ECDHE-RSA-CHACHA20-POLY1305")
    assert negotiated(text) is None


async def test_a_client_limited_to_rsa_signatures_connects(lab: RunningLab) -> None:
    code, text = await s_client(lab, 25, "-sigalgs", "RSA+SHA256")
    assert negotiated(text) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384"), text
    assert "Peer signature type: RSA" in text


async def test_tls_1_0_refused_by_default_and_logged_as_schannel_does(lab: RunningLab) -> None:
    code, text = await s_client(lab, 25, "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert negotiated(text) is None, text
    await lab.wait_for(lambda: "TLS negotiation failed" in lab.protocol_log())
    log = lab.protocol_log()
    assert ",*,,TLS negotiation failed with error AlgorithmMismatch\r\n" in log
    assert "Sending certificate Subject Issuer name" in log


async def test_tls_1_0_accepted_when_the_server_enables_it(tmp_path: Path) -> None:
    text = with_connectors(FAST_LAB_YAML, FAST).replace(
        "Name: EX01,", "Name: EX01, Tls10ServerEnabled: true,", 1)
    assert "Tls10ServerEnabled" in text
    running = await start_lab(text, tmp_path / "data")
    try:
        code, out = await s_client(running, 25, "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0")
        assert negotiated(out) == ("TLSv1.0", "ECDHE-RSA-AES256-SHA"), out
        await running.wait_for(lambda: "SP_PROT_TLS1_0_SERVER" in running.protocol_log())
        assert ('"TLS protocol SP_PROT_TLS1_0_SERVER negotiation succeeded using bulk '
                'encryption algorithm CALG_AES_256 with strength 256 bits, MAC hash algorithm '
                'CALG_SHA1 with strength 160 bits and key exchange algorithm CALG_ECDH_EPHEM '
                'with strength 255 bits"') in running.protocol_log()
        code, out = await s_client(running, 25, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
        assert negotiated(out) is None  # TLS 1.1 has its own setting, still off
        code, out = await s_client(running, 25)
        assert negotiated(out) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")
    finally:
        await running.daemon.stop()


@pytest.mark.parametrize("port", [25, 587])
async def test_python_ssl_sees_tls_1_2_and_a_setup_style_certificate(
        lab: RunningLab, port: int) -> None:
    ctx = ssl.create_default_context()  # TLS 1.3 capable
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def starttls() -> tuple[str | None, str, bytes | None]:
        with smtplib.SMTP(HOST, lab.port(port), timeout=10) as client:
            client.starttls(context=ctx)
            sock = client.sock
            assert isinstance(sock, ssl.SSLSocket)
            cipher = sock.cipher()
            assert cipher is not None
            return sock.version(), cipher[0], sock.getpeercert(binary_form=True)

    version, cipher, der = await asyncio.to_thread(starttls)
    assert (version, cipher) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048 and key.public_numbers().e == 65537
    assert cert.subject.rfc4514_string() == cert.issuer.rfc4514_string() == "CN=EX01"
    assert cert.not_valid_after_utc == cert.not_valid_before_utc.replace(
        year=cert.not_valid_before_utc.year + 5)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["EX01", "ex01.contoso.com"]
    assert len(f"{cert.serial_number:x}") in (31, 32)


def random_client_certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate nobody in the lab trusts, expired a year ago: the kind of
    certificate an Internet sender may present."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mta.stranger.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=800))
            .not_valid_after(now - datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_a_sender_with_an_untrusted_client_certificate_still_sends_mail(
        lab: RunningLab, tmp_path: Path) -> None:
    cert, key = random_client_certificate(tmp_path)
    code, out = await swaks(
        "--server", f"{HOST}:{lab.port(25)}", "--tls", "--tls-cert", str(cert),
        "--tls-key", str(key), "--from", "someone@stranger.example", "--to",
        "alice@contoso.com", "--ehlo", "mta.stranger.example")
    assert code == 0, out
    assert "TLS started" in out or "STARTTLS" in out
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)
    message = lab.mailbox("alice@contoso.com")[0].decode()
    unfolded = re.sub(r"\r\n\s+", " ", message)
    # the Front End's Received line (the client's TLS) and the hops' (exchange.md §5.4)
    assert ("by ex01.contoso.com (127.0.10.1) with Microsoft SMTP Server "
            "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)") in unfolded
    assert unfolded.count("(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)") >= 3
    log = lab.protocol_log()
    assert re.search(
        r",\*, CN=EX01 CN=EX01 [0-9A-F]{32} [0-9A-F]{40} \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z EX01;ex01\.contoso\.com,Sending certificate "
        r"Subject Issuer name Serial number Thumbprint Not before Not after Subject alternate "
        r"names\r\n", log)
    assert ('"TLS protocol SP_PROT_TLS1_2_SERVER negotiation succeeded using bulk encryption '
            'algorithm CALG_AES_256 with strength 256 bits, MAC hash algorithm CALG_SHA_384 '
            'with strength 0 bits and key exchange algorithm CALG_ECDH_EPHEM with strength '
            '255 bits"') in log


async def test_python_ssl_with_a_self_signed_client_certificate_sends_mail(
        lab: RunningLab, tmp_path: Path) -> None:
    cert, key = random_client_certificate(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert, key)

    def send() -> None:
        with smtplib.SMTP(HOST, lab.port(25), timeout=10) as client:
            client.starttls(context=ctx)
            client.sendmail("x@stranger.example", ["alice@contoso.com"],
                            b"Subject: hi\r\n\r\nhello\r\n")

    await asyncio.to_thread(send)
    await lab.wait_for(lambda: len(lab.mailbox("alice@contoso.com")) == 1)


def test_the_setup_certificate_starts_when_the_lab_first_started(lab: RunningLab) -> None:
    pem = (lab.data / "pki" / "servers" / "EX01.crt").read_bytes()
    start = x509.load_pem_x509_certificate(pem).not_valid_before_utc
    assert start.microsecond == 0
    assert abs(datetime.datetime.now(datetime.UTC) - start) < datetime.timedelta(minutes=5)


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.0\r\n\r\n", b"EHLO inside-tls\r\n"])
async def test_plain_text_where_the_client_hello_belongs_is_an_illegal_message(
        lab: RunningLab, junk: bytes) -> None:
    reader, writer = await asyncio.open_connection(HOST, lab.port(25))
    try:
        await reader.readuntil(b"\r\n")
        writer.write(b"EHLO client.example\r\n")
        while not (await reader.readuntil(b"\r\n")).startswith(b"250 "):
            pass
        writer.write(b"STARTTLS\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"220 2.0.0")
        writer.write(junk)
        await asyncio.wait_for(reader.read(), 10)  # the server ends the session
    finally:
        writer.close()
    await lab.wait_for(lambda: "TLS negotiation failed" in lab.protocol_log())
    assert ",*,,TLS negotiation failed with error IllegalMessage\r\n" in lab.protocol_log()
    code, text = await s_client(lab, 25)  # the listener keeps serving
    assert negotiated(text) == ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384")


async def test_a_client_that_refuses_the_certificate_is_logged_with_schannels_name(
        lab: RunningLab, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    code, text = await s_client(lab, 25, "-CAfile", str(other_ca), "-verify_return_error")
    assert negotiated(text) is None
    await lab.wait_for(lambda: "TLS negotiation failed" in lab.protocol_log())
    # the client's fatal alert (unknown CA) ends the handshake: Schannel's IllegalMessage
    assert ",*,,TLS negotiation failed with error IllegalMessage\r\n" in lab.protocol_log()
