"""The lab PKI: the server certificate (creation, reuse, regeneration) and its description."""

from __future__ import annotations

import datetime
import hashlib
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchsim.tls.pki import (
    CertificateFiles,
    ensure_server_certificate,
    format_dn,
    load_certificate_files,
)

from .conftest import NOW
from .helpers import issue


def _cert(files: CertificateFiles) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files.cert_path.read_bytes())


def test_first_call_creates_an_exchange_like_self_signed_certificate(tmp_path: Path) -> None:
    files = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)

    assert files.cert_path == tmp_path / "servers" / "EX01.crt"
    assert files.key_path == tmp_path / "servers" / "EX01.key"
    assert files.subject == "CN=EX01"
    assert files.issuer == "CN=EX01"
    assert files.self_signed
    assert files.dns_names == ("EX01", "ex01.contoso.com")
    # setup's validity: from creation, to the second, to the same date-time five years on
    assert files.not_before == NOW.replace(microsecond=0)
    assert files.not_after == NOW.replace(microsecond=0, year=NOW.year + 5)
    assert files.not_before.tzinfo is not None
    assert files.not_before.utcoffset() == datetime.timedelta(0)

    cert = _cert(files)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert files.load_der() == der
    assert files.thumbprint == hashlib.sha1(der).hexdigest().upper()
    assert len(files.thumbprint) == 40
    assert files.serial == files.serial.upper()
    assert int(files.serial, 16) == cert.serial_number
    assert len(files.serial) == 32  # 16 bytes, and 16 in DER (no sign byte)
    assert cert.serial_number.bit_length() > 120
    assert cert.version is x509.Version.v3
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"

    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "EX01"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["EX01", "ex01.contoso.com"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku_ext = cert.extensions.get_extension_for_class(x509.KeyUsage)
    ku = ku_ext.value
    assert ku_ext.critical
    assert ku.digital_signature and ku.key_encipherment
    assert not (ku.key_cert_sign or ku.crl_sign or ku.content_commitment or ku.key_agreement
                or ku.data_encipherment)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False and bc.value.path_length is None
    assert [type(e.value) for e in cert.extensions] == [
        x509.KeyUsage, x509.SubjectAlternativeName, x509.ExtendedKeyUsage,
        x509.BasicConstraints]  # no subject or authority key identifier
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048 == files.key_bits
    assert public_key.public_numbers().e == 65537
    cert.verify_directly_issued_by(cert)  # really self-signed

    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(files.key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert sorted(p.name for p in files.cert_path.parent.iterdir()) == ["EX01.crt", "EX01.key"]


def test_second_call_reuses_the_files(tmp_path: Path) -> None:
    first = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    before = (first.cert_path.read_bytes(), first.key_path.read_bytes())
    os.chmod(first.key_path, 0o644)

    later = NOW + datetime.timedelta(days=400)
    second = ensure_server_certificate(tmp_path, "EX01", "EX01.Contoso.com", later)

    assert second == first
    assert (second.cert_path.read_bytes(), second.key_path.read_bytes()) == before
    assert stat.S_IMODE(second.key_path.stat().st_mode) == 0o600


def test_same_name_and_fqdn_gives_one_dns_name(tmp_path: Path) -> None:
    files = ensure_server_certificate(tmp_path, "edge", "EDGE", NOW)
    assert files.dns_names == ("edge",)
    assert ensure_server_certificate(tmp_path, "edge", "edge", NOW) == files


@pytest.mark.parametrize(
    ("server_name", "fqdn", "when"),
    [
        ("EX01", "ex01.fabrikam.com", NOW),  # FQDN changed
        ("EX01", "ex01.contoso.com", NOW.replace(year=NOW.year + 5)),  # expired (notAfter)
        ("EX01", "ex01.contoso.com", NOW - datetime.timedelta(days=1)),  # not yet valid
    ],
)
def test_regenerated_when_names_changed_or_not_valid(
    tmp_path: Path, server_name: str, fqdn: str, when: datetime.datetime
) -> None:
    first = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    first_key = first.key_path.read_bytes()
    second = ensure_server_certificate(tmp_path, server_name, fqdn, when)

    assert second.thumbprint != first.thumbprint
    assert second.cert_path == first.cert_path
    assert second.key_path.read_bytes() != first_key  # a new key, not just a new certificate
    assert second.dns_names == (server_name, fqdn)
    assert second.valid_at(when)
    assert load_certificate_files(second.cert_path, second.key_path) == second
    assert sorted(p.name for p in tmp_path.joinpath("servers").iterdir()) == [
        "EX01.crt",
        "EX01.key",
    ]


def test_regenerated_when_the_key_does_not_match(tmp_path: Path) -> None:
    first = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    first.key_path.write_bytes(other)  # as after a crash between the key and the cert write

    second = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)

    assert second.thumbprint != first.thumbprint
    assert load_certificate_files(second.cert_path, second.key_path) == second


def test_regenerated_when_the_files_are_garbage(tmp_path: Path) -> None:
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "EX01.crt").write_text("not a certificate")
    files = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    assert files.subject == "CN=EX01"
    assert load_certificate_files(files.cert_path, files.key_path) == files


def test_servers_get_their_own_files(tmp_path: Path) -> None:
    ex01 = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    ex02 = ensure_server_certificate(tmp_path, "EX02", "ex02.contoso.com", NOW)
    assert ex01.cert_path != ex02.cert_path
    assert ex01.thumbprint != ex02.thumbprint
    assert ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW) == ex01


def test_naive_now_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW.replace(tzinfo=None))


@pytest.mark.parametrize("name", ["", "..", "a/b", "a\\b"])
def test_unusable_server_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        ensure_server_certificate(tmp_path, name, "ex01.contoso.com", NOW)
    assert not (tmp_path / "servers").exists() or not any((tmp_path / "servers").iterdir())


def test_now_in_another_zone_is_converted_to_utc(tmp_path: Path) -> None:
    zone = datetime.timezone(datetime.timedelta(hours=2))
    files = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW.astimezone(zone))
    assert files.not_before == NOW.replace(microsecond=0)
    assert files.not_before.utcoffset() == datetime.timedelta(0)


def test_load_certificate_files_describes_a_ca_issued_certificate(tmp_path: Path) -> None:
    ca = trustme.CA(organization_name="Fabrikam", organization_unit_name="PKI")
    files = issue(
        ca, tmp_path, "mail", "mail.contoso.com", "smtp.contoso.com", common_name="mail.contoso.com"
    )
    assert files.subject == "CN=mail.contoso.com, OU=Messaging, O=Contoso"
    assert files.issuer == "OU=PKI, O=Fabrikam"
    assert not files.self_signed
    assert files.dns_names == ("mail.contoso.com", "smtp.contoso.com")
    # the chain file holds leaf + CA; load_der is the leaf
    leaf = x509.load_pem_x509_certificates(files.cert_path.read_bytes())[0]
    assert files.load_der() == leaf.public_bytes(serialization.Encoding.DER)


def test_load_certificate_files_refuses_a_foreign_key(tmp_path: Path) -> None:
    ex01 = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    ex02 = ensure_server_certificate(tmp_path, "EX02", "ex02.contoso.com", NOW)
    with pytest.raises(ValueError, match="not the private key"):
        load_certificate_files(ex01.cert_path, ex02.key_path)


def test_format_dn_uses_exchange_order_and_windows_names() -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso, Ltd"),
            x509.NameAttribute(NameOID.COMMON_NAME, "mail.contoso.com"),
        ]
    )
    assert format_dn(name) == r"CN=mail.contoso.com, O=Contoso\, Ltd, S=WA, C=US"


def test_an_ecdsa_certificate_of_an_earlier_version_is_replaced(tmp_path: Path) -> None:
    """Earlier exchsim versions made ECDSA P-256 certificates: the next start replaces them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EX01")])
    old = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
           .public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(NOW - datetime.timedelta(days=1))
           .not_valid_after(NOW + datetime.timedelta(days=100))
           .add_extension(x509.SubjectAlternativeName(
               [x509.DNSName("EX01"), x509.DNSName("ex01.contoso.com")]), critical=False)
           .sign(key, hashes.SHA256()))
    servers = tmp_path / "servers"
    servers.mkdir()
    (servers / "EX01.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (servers / "EX01.crt").write_bytes(old.public_bytes(serialization.Encoding.PEM))

    files = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    assert isinstance(_cert(files).public_key(), rsa.RSAPublicKey)
    assert files.not_before == NOW.replace(microsecond=0)


def _made_at(args: tuple[Path, float]) -> str:
    """In a child process: wait for the common start time, then make EX01's certificate."""
    directory, start = args
    while time.time() < start:
        time.sleep(0.001)
    files = ensure_server_certificate(directory, "EX01", "ex01.contoso.com", NOW)
    load_certificate_files(files.cert_path, files.key_path)  # the pair on disk matches
    return files.thumbprint


def test_processes_starting_at_once_make_one_certificate(tmp_path: Path) -> None:
    """The services of a server started at once on one data directory: one key and one
    certificate, the same for all (an flock around the check and the creation)."""
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        start = time.time() + 0.5
        thumbprints = pool.map(_made_at, [(tmp_path, start)] * 4, chunksize=1)
    assert len(set(thumbprints)) == 1, thumbprints
    files = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    assert files.thumbprint == thumbprints[0]
