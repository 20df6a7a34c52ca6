"""The SSL contexts, exercised over real TLS handshakes on 127.0.0.1."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchsim.policy.schannel import SUITES
from exchsim.tls.contexts import (
    client_context_anonymous_tls,
    client_context_verify,
    server_context_starttls,
)
from exchsim.tls.judged import JudgedServerContext
from exchsim.tls.pki import CertificateFiles, load_certificate_files

from .conftest import LabPki
from .helpers import handshake, issue


def _failed_handshake(exc: BaseException | None) -> bool:
    # When the server rejects the client certificate it aborts the connection: the client's
    # handshake ends with a reset or with the TLS alert, whichever it reads first.
    return isinstance(exc, ssl.SSLError | ConnectionError)


# --- X-ANONYMOUSTLS ----------------------------------------------------------------------


async def test_published_client_certificate_is_accepted_and_visible(lab_pki: LabPki) -> None:
    result = await handshake(JudgedServerContext(lab_pki.ex01),
                             client_context_anonymous_tls(lab_pki.ex02))

    assert result.server.error is None
    assert result.client.error is None
    assert result.server.peer_der == lab_pki.ex02.load_der()
    assert result.client.peer_der == lab_pki.ex01.load_der()  # the server presented EX01
    assert result.server.version == result.client.version == "TLSv1.2"


async def test_tls_unique_is_the_same_on_both_sides_and_per_session(lab_pki: LabPki) -> None:
    server_ctx = JudgedServerContext(lab_pki.ex01)
    client_ctx = client_context_anonymous_tls(lab_pki.ex02)
    first = await handshake(server_ctx, client_ctx)
    second = await handshake(server_ctx, client_ctx)

    assert first.server.tls_unique is not None
    assert len(first.server.tls_unique) == 12  # TLS 1.2 Finished verify_data
    assert first.server.tls_unique == first.client.tls_unique
    assert second.server.tls_unique == second.client.tls_unique
    assert first.server.tls_unique != second.server.tls_unique


async def test_client_without_certificate_gets_a_session(lab_pki: LabPki) -> None:
    result = await handshake(JudgedServerContext(lab_pki.ex01), client_context_verify())

    assert result.server.error is None
    assert result.client.error is None
    assert result.server.peer_der is None
    assert result.server.version == "TLSv1.2"
    assert result.server.tls_unique == result.client.tls_unique


async def test_any_client_certificate_completes_the_handshake_to_be_judged_after(
    lab_pki: LabPki, tmp_path: Path
) -> None:
    # OUTSIDER is a self-signed CN=EX02 with another key: same names, not published; FOREIGN
    # is issued by a CA nobody trusts. Exchange completes the handshake and judges afterwards
    # (exchange.md §4.1 item 3), so the server sees exactly the certificate that was presented.
    foreign = issue(trustme.CA(), tmp_path, "foreign", "ex02.contoso.com", common_name="EX02")
    for presented in (lab_pki.outsider, foreign):
        result = await handshake(JudgedServerContext(lab_pki.ex01),
                                 client_context_anonymous_tls(presented))
        assert result.server.error is None and result.client.error is None
        assert result.server.peer_der == presented.load_der()
        assert result.server.peer_der != lab_pki.ex02.load_der()
        assert result.server.tls_unique == result.client.tls_unique


async def test_judged_context_speaks_tls_1_2_only(lab_pki: LabPki) -> None:
    client_ctx = client_context_verify()
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    result = await handshake(JudgedServerContext(lab_pki.ex01), client_ctx)
    assert result.server.error is not None
    assert _failed_handshake(result.client.error)


def test_judged_context_is_for_memory_bios_on_the_server_side_only(lab_pki: LabPki) -> None:
    ctx = JudgedServerContext(lab_pki.ex01)
    with pytest.raises(ValueError):
        ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=False)
    with pytest.raises(NotImplementedError):
        ctx.wrap_socket(None)


async def test_a_server_auth_only_certificate_is_presented_and_seen_as_it_is(
    lab_pki: LabPki, tmp_path: Path
) -> None:
    """The judged server accepts any certificate in the handshake (Python's ssl refused this
    one with 'unsuitable certificate purpose'); the session judges it by its exact bytes."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EX03")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "ex03.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ex03.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ex03 = load_certificate_files(tmp_path / "ex03.crt", tmp_path / "ex03.key")
    result = await handshake(JudgedServerContext(lab_pki.ex01), client_context_anonymous_tls(ex03))

    assert result.server.error is None
    assert result.server.peer_der == cert.public_bytes(serialization.Encoding.DER)


def test_anonymous_tls_client_context_settings(lab_pki: LabPki) -> None:
    client_ctx = client_context_anonymous_tls(lab_pki.ex02)
    assert client_ctx.verify_mode == ssl.CERT_NONE
    assert not client_ctx.check_hostname
    assert client_ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    assert client_ctx.cert_store_stats()["x509"] == 0  # trusts nothing, verifies nothing


# --- STARTTLS ----------------------------------------------------------------------------


async def test_starttls_requests_a_client_certificate_and_takes_any(lab_pki: LabPki) -> None:
    server_ctx = server_context_starttls(lab_pki.ex01)
    # the client has a certificate: it is asked for it, and the handshake completes
    result = await handshake(server_ctx, client_context_anonymous_tls(lab_pki.ex02))
    assert result.server.error is None and result.client.error is None
    assert result.server.peer_der == lab_pki.ex02.load_der()
    assert result.client.peer_der == lab_pki.ex01.load_der()

    # a TLS-1.3-capable client without a certificate negotiates TLS 1.2
    modern = await handshake(server_ctx, client_context_verify())
    assert modern.server.error is None
    assert modern.server.version == "TLSv1.2"
    assert modern.server.peer_der is None


async def test_verifying_client_accepts_the_self_signed_certificate_it_was_given(
    lab_pki: LabPki,
) -> None:
    server_ctx = server_context_starttls(lab_pki.ex01)
    client_ctx = client_context_verify(lab_pki.ex01.cert_path)
    assert client_ctx.verify_mode == ssl.CERT_REQUIRED and client_ctx.check_hostname

    for name in ("ex01.contoso.com", "EX01"):
        ok = await handshake(server_ctx, client_ctx, server_hostname=name)
        assert ok.client.error is None, name
        assert ok.client.peer_der == lab_pki.ex01.load_der()


@pytest.mark.parametrize("which", ["wrong-name", "wrong-server"])
async def test_verifying_client_refuses(lab_pki: LabPki, which: str) -> None:
    client_ctx = client_context_verify(lab_pki.ex01.cert_path)
    if which == "wrong-name":
        result = await handshake(
            server_context_starttls(lab_pki.ex01), client_ctx, server_hostname="mail.contoso.com"
        )
        expected = "Hostname mismatch"
    else:
        result = await handshake(
            server_context_starttls(lab_pki.ex02), client_ctx, server_hostname="ex02.contoso.com"
        )
        expected = "self-signed certificate"
    assert isinstance(result.client.error, ssl.SSLCertVerificationError)
    assert expected in str(result.client.error)
    assert result.server.error is not None  # the server sees the client's alert


async def test_verifying_client_without_hostname_check(lab_pki: LabPki, tmp_path: Path) -> None:
    client_ctx = client_context_verify(lab_pki.ex01.cert_path, check_hostname=False)
    result = await handshake(
        server_context_starttls(lab_pki.ex01), client_ctx, server_hostname="mail.contoso.com"
    )
    assert result.client.error is None

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    mail = issue(ca, tmp_path, "mail", "mail.contoso.com", common_name="mail.contoso.com")
    chained = await handshake(
        server_context_starttls(mail), client_context_verify(ca_file), "mail.contoso.com"
    )
    assert chained.client.error is None
    assert chained.client.peer_der == mail.load_der()


async def test_non_verifying_client_accepts_anything(lab_pki: LabPki) -> None:
    client_ctx = client_context_verify()
    assert client_ctx.verify_mode == ssl.CERT_NONE and not client_ctx.check_hostname
    result = await handshake(
        server_context_starttls(lab_pki.outsider), client_ctx, server_hostname="whatever"
    )
    assert result.client.error is None
    assert result.client.peer_der == lab_pki.outsider.load_der()


# --- the Schannel profile on both ends (exchange.md §4.6) ----------------------------------


async def test_starttls_carries_the_presented_chain_leaf_first(
        lab_pki: LabPki, tmp_path: Path) -> None:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    partner = issue(intermediate, tmp_path / "partner", "partner", "mail.partner.example")
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.load_cert_chain(partner.cert_path, partner.key_path)

    result = await handshake(server_context_starttls(lab_pki.ex01), client_ctx)
    assert result.server.error is None
    intermediate_der = x509.load_pem_x509_certificate(
        intermediate.cert_pem.bytes()).public_bytes(serialization.Encoding.DER)
    assert result.server.peer_der == partner.load_der()
    assert result.server.chain == (partner.load_der(), intermediate_der)

    bare = await handshake(server_context_starttls(lab_pki.ex01), client_context_verify())
    assert bare.server.chain == () and bare.server.peer_der is None


def _python_server(cert: CertificateFiles, curve: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")
    ctx.set_ecdh_curve(curve)  # this server takes this one group only
    return ctx


async def test_the_hop_client_offers_windows_groups_and_suites_in_order(
        lab_pki: LabPki) -> None:
    client_ctx = client_context_anonymous_tls(lab_pki.ex02)
    names = [c["name"] for c in client_ctx.get_ciphers() if c["protocol"] != "TLSv1.3"]
    assert names == [s.openssl for s in SUITES]  # (TLS 1.3 suites listed, never offered)
    for curve in ("prime256v1", "secp384r1"):
        ok = await handshake(_python_server(lab_pki.ex01, curve), client_ctx)
        assert ok.client.error is None, curve
        assert ok.client.version == "TLSv1.2"
    refused = await handshake(_python_server(lab_pki.ex01, "secp521r1"), client_ctx)
    assert refused.client.error is not None  # P-521 is not a group Windows offers
