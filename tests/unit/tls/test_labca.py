"""The lab CA (tls/labca.py) and what it issues and revokes (tls/issued.py), with a pinned now."""

from __future__ import annotations

import datetime
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchsim.tls.crlhttp import distribution_points
from exchsim.tls.issued import issue_certificate, issued_records, revoke, write_out
from exchsim.tls.labca import (
    CRL_VALIDITY,
    LabCa,
    PkiError,
    ensure_lab_ca,
    load_crl,
    load_lab_ca,
    publish_crls,
    trust_anchors,
)

NOW = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
BASE = "http://127.0.10.251:10080"


@pytest.fixture(scope="module")
def lab_ca(tmp_path_factory: pytest.TempPathFactory) -> LabCa:
    return ensure_lab_ca(tmp_path_factory.mktemp("data") / "pki", NOW, crl_base_url=BASE,
                         untrusted=True)


def chain(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_the_ca_is_made_once_with_private_keys(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    first = ensure_lab_ca(pki, NOW, crl_base_url=BASE)
    for name in ("root", "issuing"):
        assert stat.S_IMODE((pki / "ca" / f"{name}.key").stat().st_mode) == 0o600
    assert not (pki / "ca" / "untrusted.crt").exists()  # made when first needed
    root_pem = first.root_path.read_bytes()
    again = ensure_lab_ca(pki, NOW + datetime.timedelta(hours=1), crl_base_url="http://other:1")
    assert again.root_path.read_bytes() == root_pem  # reused, not made anew
    assert again.crl_base_url == BASE  # what the certificates already point at
    assert load_lab_ca(pki).issuing.cert == first.issuing.cert
    assert not list((pki / "ca").glob(".*.tmp"))


def test_root_and_issuing_ca(lab_ca: LabCa) -> None:
    root, issuing = lab_ca.root.cert, lab_ca.issuing.cert
    assert root.issuer == root.subject
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == \
        "exchsim Lab Root CA"
    assert isinstance(root.public_key(), rsa.RSAPublicKey)
    issuing.verify_directly_issued_by(root)
    constraints = issuing.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert distribution_points(issuing) == (f"{BASE}/crl/root.crl",)
    assert trust_anchors(lab_ca) == (root,)
    assert lab_ca.untrusted is not None
    assert lab_ca.untrusted.cert.subject != root.subject


def test_missing_ca_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="no lab CA"):
        load_lab_ca(tmp_path / "pki")


def test_issue_default(lab_ca: LabCa, tmp_path: Path) -> None:
    issued = issue_certificate(lab_ca, "mail.partner.example", NOW)
    leaf, intermediate = chain(issued.chain_pem)  # the chain stops before the root
    assert intermediate == lab_ca.issuing.cert
    leaf.verify_directly_issued_by(lab_ca.issuing.cert)
    assert leaf.subject.rfc4514_string() == "CN=mail.partner.example"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mail.partner.example"]
    assert eku(leaf) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    public = leaf.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    assert leaf.not_valid_before_utc == NOW.replace(microsecond=0) - datetime.timedelta(hours=1)
    assert leaf.not_valid_after_utc == NOW.replace(microsecond=0) + datetime.timedelta(days=365)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert distribution_points(leaf) == (f"{BASE}/crl/issuing.crl",)
    assert issued.files.thumbprint in {r.thumbprint for r in issued_records(lab_ca.pki_dir)}
    pem, key = write_out(issued, tmp_path / "out", "mail.partner.example")
    assert pem.read_bytes() == issued.chain_pem
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(lab_ca.root_path),
                             "-untrusted", str(pem), "-purpose", "sslserver", str(pem)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_issue_expired_and_not_yet_valid(lab_ca: LabCa) -> None:
    expired = issue_certificate(lab_ca, "old.partner.example", NOW, expired=True).certificate
    assert expired.not_valid_after_utc < NOW
    assert expired.not_valid_after_utc == NOW.replace(microsecond=0) - datetime.timedelta(days=1)
    future = issue_certificate(lab_ca, "new.partner.example", NOW, not_yet_valid=True,
                               days=30).certificate
    assert future.not_valid_before_utc == NOW.replace(microsecond=0) + datetime.timedelta(days=1)
    assert future.not_valid_after_utc - future.not_valid_before_utc == datetime.timedelta(days=30)
    with pytest.raises(PkiError):
        issue_certificate(lab_ca, "x.example", NOW, expired=True, not_yet_valid=True)


def test_issue_exact_dates(lab_ca: LabCa) -> None:
    start = NOW - datetime.timedelta(days=2)
    end = NOW + datetime.timedelta(seconds=1)
    cert = issue_certificate(lab_ca, "pinned.example", NOW, not_before=start.replace(microsecond=0),
                             not_after=end.replace(microsecond=0)).certificate
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, end)


def test_issue_client_auth_only(lab_ca: LabCa) -> None:
    cert = issue_certificate(lab_ca, "client.example", NOW, server_auth=False).certificate
    assert eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_issue_untrusted(lab_ca: LabCa) -> None:
    assert lab_ca.untrusted is not None
    issued = issue_certificate(lab_ca, "mail.partner.example", NOW, untrusted=True)
    (leaf,) = chain(issued.chain_pem)  # its CA is a root: nothing follows the leaf
    leaf.verify_directly_issued_by(lab_ca.untrusted.cert)
    assert leaf.issuer != lab_ca.issuing.cert.subject
    assert distribution_points(leaf) == (f"{BASE}/crl/untrusted.crl",)


def test_issue_other_names(lab_ca: LabCa) -> None:
    cert = issue_certificate(lab_ca, "mail.partner.example", NOW,
                             dns_names=["www.elsewhere.example", "*.elsewhere.example"]
                             ).certificate
    assert cert.subject.rfc4514_string() == "CN=mail.partner.example"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.elsewhere.example",
                                                      "*.elsewhere.example"]


@pytest.mark.parametrize("name", ["", "a/b", "two words", "../x", "*", "a..b", "-a.example"])
def test_issue_rejects_names_that_are_no_host_names(lab_ca: LabCa, name: str) -> None:
    with pytest.raises(PkiError, match="is not a host name"):
        issue_certificate(lab_ca, name, NOW)


def test_revoke_publishes_a_crl_with_the_serial(tmp_path: Path) -> None:
    lab_ca = ensure_lab_ca(tmp_path / "pki", NOW, crl_base_url=BASE)
    first = load_crl(lab_ca.crl_path("issuing"))
    assert len(first) == 0
    assert first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    a = issue_certificate(lab_ca, "a.example", NOW)
    b = issue_certificate(lab_ca, "b.example", NOW)
    later = NOW + datetime.timedelta(minutes=5)
    (done,) = revoke(lab_ca, later, name="A.example", reason="keyCompromise")
    assert done.thumbprint == a.files.thumbprint
    crl = load_crl(lab_ca.crl_path("issuing"))
    assert crl.is_signature_valid(lab_ca.issuing.key.public_key())  # type: ignore[arg-type]
    assert crl.issuer == lab_ca.issuing.cert.subject
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert crl.last_update_utc == later.replace(microsecond=0)
    assert crl.next_update_utc == later.replace(microsecond=0) + CRL_VALIDITY
    entry = crl.get_revoked_certificate_by_serial_number(a.certificate.serial_number)
    assert entry is not None and entry.revocation_date_utc == later.replace(microsecond=0)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    assert crl.get_revoked_certificate_by_serial_number(b.certificate.serial_number) is None
    revoke(lab_ca, later, serial=b.files.serial)
    assert len(load_crl(lab_ca.crl_path("issuing"))) == 2
    with pytest.raises(PkiError, match="already revoked"):
        revoke(lab_ca, later, name="a.example")
    with pytest.raises(PkiError, match=r"issued no certificate named 'nobody\.example'"):
        revoke(lab_ca, later, name="nobody.example")
    with pytest.raises(PkiError, match="reason"):
        revoke(lab_ca, later, name="a.example", reason="because")


def test_publish_crls_counts_up_and_keeps_revocations(tmp_path: Path) -> None:
    lab_ca = ensure_lab_ca(tmp_path / "pki", NOW, crl_base_url=BASE)
    cert = issue_certificate(lab_ca, "a.example", NOW)
    revoke(lab_ca, NOW, name="a.example")
    written = publish_crls(lab_ca, NOW + datetime.timedelta(days=1))
    assert set(written) == {"root", "issuing"}
    crl = load_crl(written["issuing"])
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    assert crl.get_revoked_certificate_by_serial_number(cert.certificate.serial_number)
    assert len(load_crl(written["root"])) == 0


def test_a_stale_crl_is_published_again_at_start(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    lab_ca = ensure_lab_ca(pki, NOW, crl_base_url=BASE)
    before = lab_ca.crl_path("issuing").read_bytes()
    ensure_lab_ca(pki, NOW + datetime.timedelta(days=5), crl_base_url=BASE)
    assert lab_ca.crl_path("issuing").read_bytes() == before  # two days left: kept
    ensure_lab_ca(pki, NOW + datetime.timedelta(days=6, hours=1), crl_base_url=BASE)
    crl = load_crl(lab_ca.crl_path("issuing"))
    assert crl.last_update_utc == (NOW + datetime.timedelta(days=6, hours=1)).replace(
        microsecond=0)
