"""Each server's certificate store (tls/certstore.py) and STARTTLS selection among its SMTP
certificates (exchange.md §4.5, §4.7), with a pinned now."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from exchsim.tls.certstore import (
    by_domain_name,
    enable,
    import_certificate,
    parse_services,
    services_flags,
    smtp_certificates,
    store_entries,
)
from exchsim.tls.issued import issue_certificate, write_out
from exchsim.tls.labca import LabCa, PkiError, ensure_lab_ca
from exchsim.tls.pki import CertificateFiles, ensure_server_certificate, select_certificate

NOW = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
ISSUING = "CN=exchsim Lab Issuing CA, O=exchsim lab"


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return tmp_path / "pki"


@pytest.fixture
def lab_ca(pki: Path) -> LabCa:
    return ensure_lab_ca(pki, NOW, untrusted=True)


@pytest.fixture
def setup(pki: Path) -> CertificateFiles:
    return ensure_server_certificate(pki, "EX01", "ex01.contoso.com", NOW)


def enabled(lab_ca: LabCa, setup: CertificateFiles, name: str, **kwargs: object
            ) -> CertificateFiles:
    issued = issue_certificate(lab_ca, name, NOW, **kwargs)  # type: ignore[arg-type]
    return enable(lab_ca.pki_dir, "EX01", issued.files.thumbprint, frozenset({"SMTP"}),
                  setup).files


def test_services_column() -> None:
    assert services_flags(frozenset({"IMAP", "POP", "IIS", "SMTP"})) == "IP.WS.."
    assert services_flags(frozenset({"SMTP"})) == "....S.."
    assert services_flags(frozenset()) == "......."
    assert parse_services("iis, Smtp") == {"IIS", "SMTP"}
    assert parse_services("None") == frozenset()
    with pytest.raises(PkiError, match="'UM' is not one of"):
        parse_services("UM")


def test_the_setup_certificate_is_always_there(pki: Path, setup: CertificateFiles) -> None:
    (entry,) = store_entries(pki, "EX01", setup)
    assert entry.setup and entry.services == {"IMAP", "POP", "IIS", "SMTP"}
    assert entry.root_ca_type == "Registry"
    assert smtp_certificates(pki, "EX01", setup) == [setup]


def test_enable_is_additive_and_per_server(lab_ca: LabCa, setup: CertificateFiles) -> None:
    issued = issue_certificate(lab_ca, "mail.contoso.com", NOW)
    thumb = issued.files.thumbprint
    entry = enable(lab_ca.pki_dir, "EX01", thumb.lower(), frozenset({"IIS"}), setup)
    assert entry.services == {"IIS"}
    assert smtp_certificates(lab_ca.pki_dir, "EX01", setup) == [setup]
    entry = enable(lab_ca.pki_dir, "ex01", thumb, frozenset({"SMTP"}), setup)
    assert entry.services == {"IIS", "SMTP"}  # what was enabled stays
    assert entry.status(NOW, lab_ca) == "Valid"
    assert [f.thumbprint for f in smtp_certificates(lab_ca.pki_dir, "EX01", setup)] == \
        [setup.thumbprint, thumb]
    assert smtp_certificates(lab_ca.pki_dir, "EX02", setup) == [setup]


def test_enable_unknown_thumbprint(lab_ca: LabCa, setup: CertificateFiles) -> None:
    with pytest.raises(PkiError, match="no certificate with thumbprint"):
        enable(lab_ca.pki_dir, "EX01", "AB" * 20, frozenset({"SMTP"}), setup)
    with pytest.raises(PkiError, match="40 hexadecimal digits"):
        enable(lab_ca.pki_dir, "EX01", "xyz", frozenset({"SMTP"}), setup)


def test_import_then_status(lab_ca: LabCa, setup: CertificateFiles, tmp_path: Path) -> None:
    issued = issue_certificate(lab_ca, "mail.contoso.com", NOW, untrusted=True)
    pem, key = write_out(issued, tmp_path / "out", "mail")
    entry = import_certificate(lab_ca.pki_dir, "EX01", pem, key, frozenset(), setup)
    assert entry.services == frozenset()
    assert entry.status(NOW, lab_ca) == "Untrusted"
    assert entry.status(NOW + datetime.timedelta(days=400), lab_ca) == "DateInvalid"
    with pytest.raises(PkiError, match="cannot import"):
        import_certificate(lab_ca.pki_dir, "EX01", pem, setup.key_path, frozenset(), setup)


# --- selection among the store's SMTP certificates (exchange.md §4.5) ----------------------


def test_ca_issued_for_the_fqdn_wins_over_the_setup_certificate(
        lab_ca: LabCa, setup: CertificateFiles) -> None:
    issued = enabled(lab_ca, setup, "ex01.contoso.com")
    pool = smtp_certificates(lab_ca.pki_dir, "EX01", setup)
    assert select_certificate(pool, "ex01.contoso.com", None, now=NOW) == issued
    # A connector whose Fqdn only the setup certificate names keeps it.
    assert select_certificate(pool, "EX01", None, now=NOW) == setup


def test_no_certificate_for_the_fqdn_means_no_starttls(
        lab_ca: LabCa, setup: CertificateFiles) -> None:
    enabled(lab_ca, setup, "mail.contoso.com")
    pool = smtp_certificates(lab_ca.pki_dir, "EX01", setup)
    assert select_certificate(pool, "smtp.contoso.com", None, now=NOW) is None


def test_wildcard_covers_one_label(lab_ca: LabCa, setup: CertificateFiles) -> None:
    wild = enabled(lab_ca, setup, "*.contoso.com")
    pool = smtp_certificates(lab_ca.pki_dir, "EX01", setup)
    assert select_certificate(pool, "mail.contoso.com", None, now=NOW) == wild
    assert select_certificate(pool, "a.mail.contoso.com", None, now=NOW) is None


def test_newest_not_before_among_equals(lab_ca: LabCa, setup: CertificateFiles) -> None:
    older = enabled(lab_ca, setup, "mail.contoso.com", not_before=NOW - 48 * HOUR)
    newer = enabled(lab_ca, setup, "mail.contoso.com", not_before=NOW - 2 * HOUR)
    pool = smtp_certificates(lab_ca.pki_dir, "EX01", setup)
    assert select_certificate(pool, "mail.contoso.com", None, now=NOW) == newer
    assert select_certificate(pool, "mail.contoso.com", None, now=NOW - 3 * HOUR) == older


def test_expired_or_not_yet_valid_is_not_usable(lab_ca: LabCa, setup: CertificateFiles) -> None:
    end = NOW.replace(microsecond=0)
    cert = enabled(lab_ca, setup, "mail.contoso.com", not_before=end - 48 * HOUR, not_after=end)
    pool = smtp_certificates(lab_ca.pki_dir, "EX01", setup)
    last = end - datetime.timedelta(seconds=1)
    assert select_certificate(pool, "mail.contoso.com", None, now=last) == cert
    assert select_certificate(pool, "mail.contoso.com", None, now=end) is None
    start = end - 48 * HOUR
    assert select_certificate(pool, "mail.contoso.com", None,
                              now=start - datetime.timedelta(seconds=1)) is None


def test_only_smtp_enabled_certificates_count(lab_ca: LabCa, setup: CertificateFiles) -> None:
    issued = issue_certificate(lab_ca, "mail.contoso.com", NOW)
    enable(lab_ca.pki_dir, "EX01", issued.files.thumbprint, frozenset({"IIS"}), setup)
    pool = smtp_certificates(lab_ca.pki_dir, "EX01", setup)
    assert select_certificate(pool, "mail.contoso.com", None, now=NOW) is None


def test_tls_certificate_name_first(lab_ca: LabCa, setup: CertificateFiles) -> None:
    for_fqdn = enabled(lab_ca, setup, "mail.contoso.com")
    named = enabled(lab_ca, setup, "relay.contoso.com")
    pool = smtp_certificates(lab_ca.pki_dir, "EX01", setup)
    by_name = f"<I>{ISSUING}<S>CN=relay.contoso.com"
    assert select_certificate(pool, "mail.contoso.com", by_name, now=NOW) == named
    assert select_certificate(pool, "mail.contoso.com", "<S>CN=relay.contoso.com",
                              now=NOW) == named
    assert select_certificate(pool, "mail.contoso.com", "<I>CN=Other CA<S>CN=relay.contoso.com",
                              now=NOW) is None
    assert select_certificate(pool, "mail.contoso.com", None, now=NOW) == for_fqdn
    assert select_certificate(pool, "mail.contoso.com", "<S>CN=EX01", now=NOW) == setup


def test_domain_name_lists_the_selected_certificate_first(
        lab_ca: LabCa, setup: CertificateFiles) -> None:
    older = enabled(lab_ca, setup, "ex01.contoso.com", not_before=NOW - 48 * HOUR)
    newer = enabled(lab_ca, setup, "ex01.contoso.com", not_before=NOW - 2 * HOUR)
    enabled(lab_ca, setup, "mail.contoso.com")  # names something else
    entries = store_entries(lab_ca.pki_dir, "EX01", setup)
    listed = [e.files for e in by_domain_name(entries, "ex01.contoso.com", NOW)]
    assert listed == [newer, older, setup]
    pool = smtp_certificates(lab_ca.pki_dir, "EX01", setup)
    assert select_certificate(pool, "ex01.contoso.com", None, now=NOW) == listed[0]
