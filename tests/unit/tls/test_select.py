"""TlsCertificateName parsing/matching and STARTTLS certificate selection (exchange.md §4.5)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import trustme

from exchsim.tls.pki import (
    CertificateFiles,
    dn_equal,
    ensure_server_certificate,
    matches_tls_certificate_name,
    name_matches_fqdn,
    parse_tls_certificate_name,
    select_certificate,
)

from .conftest import NOW
from .helpers import issue

DAY = datetime.timedelta(days=1)


# --- TlsCertificateName ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "<I>CN=Fabrikam CA, DC=fabrikam, DC=com<S>CN=mail.contoso.com",
            ("CN=Fabrikam CA, DC=fabrikam, DC=com", "CN=mail.contoso.com"),
        ),
        ("<S>CN=mail.contoso.com", (None, "CN=mail.contoso.com")),
        ("  <s>CN=mail.contoso.com, O=Contoso  ", (None, "CN=mail.contoso.com, O=Contoso")),
        ("<i> CN=CA <s> O=Contoso, CN=x ", ("CN=CA", "O=Contoso, CN=x")),
        ('<S>CN=mail, O="Contoso, Ltd"', (None, 'CN=mail, O="Contoso, Ltd"')),
    ],
)
def test_parse_tls_certificate_name(value: str, expected: tuple[str | None, str]) -> None:
    assert parse_tls_certificate_name(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "CN=mail.contoso.com",  # no <S>
        "<I>CN=Fabrikam CA",  # no <S>
        "<S>O=Contoso",  # subject without CN
        "<S>",  # empty subject
        "<I><S>CN=mail",  # empty issuer
        "junk<S>CN=mail",  # text before the tags
        "<S>CN=mail<I>CN=CA",  # wrong order
        "<S>CN=a<S>CN=b",  # two subjects
        "<I>CN=a<I>CN=b<S>CN=c",  # two issuers
        "<I>Fabrikam CA<S>CN=mail",  # issuer is not a DN
        "<S>CN=mail, garbage",  # component without '='
        '<S>CN="mail',  # unterminated quote
    ],
)
def test_parse_tls_certificate_name_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_tls_certificate_name(value)


def test_dn_compare_ignores_case_and_blanks_but_not_order() -> None:
    assert dn_equal("CN=Fabrikam CA, DC=fabrikam, DC=com", "cn=fabrikam ca,dc=Fabrikam,DC=COM")
    assert dn_equal("CN=a , O = b", "CN=a,O=b")
    assert dn_equal("S=WA, E=x@y", "ST=WA, emailAddress=x@y")
    assert dn_equal(r"O=Contoso\, Ltd", 'O="Contoso, Ltd"')
    assert not dn_equal("CN=a, O=b", "O=b, CN=a")
    assert not dn_equal("CN=a", "CN=a, O=b")
    assert not dn_equal("CN=Fabrikam CA", "CN=FabrikamCA")
    assert not dn_equal("garbage", "garbage")


@pytest.fixture
def fabrikam_ca() -> trustme.CA:
    return trustme.CA(organization_name="Fabrikam", organization_unit_name="Issuing CA")


def test_matches_tls_certificate_name(tmp_path: Path, fabrikam_ca: trustme.CA) -> None:
    mail = issue(fabrikam_ca, tmp_path, "mail", "mail.contoso.com", common_name="mail.contoso.com")
    assert mail.issuer == "OU=Issuing CA, O=Fabrikam"
    assert matches_tls_certificate_name(mail, f"<S>{mail.subject}")
    assert matches_tls_certificate_name(
        mail, f"<I>ou=issuing ca,o=FABRIKAM<S>{mail.subject.upper()}"
    )
    assert not matches_tls_certificate_name(mail, f"<I>CN=Other CA<S>{mail.subject}")
    assert not matches_tls_certificate_name(mail, "<S>CN=smtp.contoso.com")
    assert not matches_tls_certificate_name(mail, "not a TlsCertificateName")

    ex01 = ensure_server_certificate(tmp_path, "EX01", "ex01.contoso.com", NOW)
    assert matches_tls_certificate_name(ex01, "<I>CN=EX01<S>CN=EX01")
    assert matches_tls_certificate_name(ex01, "<S>cn=ex01")


# --- selection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fqdn", "expected"),
    [
        ("mail.contoso.com", "mail.contoso.com", True),
        ("MAIL.contoso.com", "mail.CONTOSO.com.", True),
        ("*.contoso.com", "mail.contoso.com", True),
        ("*.contoso.com", "a.b.contoso.com", False),  # one label only
        ("*.contoso.com", "contoso.com", False),
        ("*.contoso.com", "mail.fabrikam.com", False),
        ("m*.contoso.com", "mail.contoso.com", False),  # partial-label wildcards: no
        ("mail.contoso.com", "smtp.contoso.com", False),
        ("mail.contoso.com", "", False),
    ],
)
def test_name_matches_fqdn(name: str, fqdn: str, expected: bool) -> None:
    assert name_matches_fqdn(name, fqdn) is expected


@pytest.fixture
def pool(tmp_path: Path, fabrikam_ca: trustme.CA) -> dict[str, CertificateFiles]:
    """Self-signed EX01 plus CA-issued certificates of various ages and names."""
    d = tmp_path / "certs"
    return {
        "ex01": ensure_server_certificate(tmp_path / "pki", "EX01", "mail.contoso.com", NOW),
        "mail_old": issue(
            fabrikam_ca,
            d,
            "mail_old",
            "mail.contoso.com",
            common_name="mail.contoso.com",
            not_before=NOW - 300 * DAY,
            not_after=NOW + 65 * DAY,
        ),
        "mail_new": issue(
            fabrikam_ca,
            d,
            "mail_new",
            "mail.contoso.com",
            common_name="mail.contoso.com",
            not_before=NOW - 10 * DAY,
            not_after=NOW - DAY + 365 * DAY,
        ),
        "wildcard": issue(
            fabrikam_ca,
            d,
            "wildcard",
            "*.fabrikam.com",
            common_name="*.fabrikam.com",
            not_before=NOW - 5 * DAY,
            not_after=NOW + 360 * DAY,
        ),
        "cn_only": issue(
            fabrikam_ca,
            d,
            "cn_only",
            "alias.contoso.com",
            common_name="legacy.contoso.com",
            not_before=NOW - 5 * DAY,
            not_after=NOW + 360 * DAY,
        ),
    }


def _all(pool: dict[str, CertificateFiles]) -> list[CertificateFiles]:
    return list(pool.values())


def test_ca_issued_preferred_then_newest(pool: dict[str, CertificateFiles]) -> None:
    assert select_certificate(_all(pool), "mail.contoso.com", None) == pool["mail_new"]
    reordered = list(reversed(_all(pool)))
    assert select_certificate(reordered, "mail.contoso.com", None) == pool["mail_new"]
    without_new = [c for c in _all(pool) if c is not pool["mail_new"]]
    assert select_certificate(without_new, "mail.contoso.com", None) == pool["mail_old"]


def test_self_signed_used_when_nothing_else_matches(pool: dict[str, CertificateFiles]) -> None:
    only_ex01_names = [pool["ex01"], pool["wildcard"]]
    assert select_certificate(only_ex01_names, "mail.contoso.com", None) == pool["ex01"]
    assert select_certificate(_all(pool), "EX01", None) == pool["ex01"]


def test_self_signed_newest_first(tmp_path: Path) -> None:
    older = ensure_server_certificate(tmp_path / "a", "EX01", "ex01.contoso.com", NOW - DAY)
    newer = ensure_server_certificate(tmp_path / "b", "EX01", "ex01.contoso.com", NOW)
    assert select_certificate([newer, older], "ex01.contoso.com", None) == newer
    assert select_certificate([older, newer], "ex01.contoso.com", None) == newer


def test_wildcard_covers_one_label(pool: dict[str, CertificateFiles]) -> None:
    assert select_certificate(_all(pool), "smtp.fabrikam.com", None) == pool["wildcard"]
    assert select_certificate(_all(pool), "a.smtp.fabrikam.com", None) is None
    assert select_certificate(_all(pool), "fabrikam.com", None) is None


def test_subject_cn_counts_as_a_name(pool: dict[str, CertificateFiles]) -> None:
    assert select_certificate(_all(pool), "legacy.contoso.com", None) == pool["cn_only"]
    assert select_certificate(_all(pool), "alias.contoso.com", None) == pool["cn_only"]


def test_no_match_means_no_certificate(pool: dict[str, CertificateFiles]) -> None:
    assert select_certificate(_all(pool), "mail.tailspintoys.com", None) is None
    assert select_certificate([], "mail.contoso.com", None) is None


def test_tls_certificate_name_wins_over_fqdn(pool: dict[str, CertificateFiles]) -> None:
    chosen = select_certificate(_all(pool), "mail.contoso.com", "<I>CN=EX01<S>CN=EX01")
    assert chosen == pool["ex01"]
    # names the subject of both mail_* certificates: the newest of them
    named = "<I>OU=Issuing CA, O=Fabrikam<S>" + pool["mail_old"].subject
    assert select_certificate(_all(pool), "unrelated.example", named) == pool["mail_new"]
    assert select_certificate(_all(pool), "mail.contoso.com", "<I>CN=Nobody<S>CN=EX01") is None
    assert select_certificate(_all(pool), "mail.contoso.com", "<S>CN=missing") is None
    assert select_certificate(_all(pool), "mail.contoso.com", "invalid") is None
    # an empty value is the same as not set
    assert select_certificate(_all(pool), "mail.contoso.com", "  ") == pool["mail_new"]


def test_now_skips_certificates_not_valid(pool: dict[str, CertificateFiles]) -> None:
    later = NOW + 200 * DAY  # mail_old expired, mail_new still valid
    assert select_certificate(_all(pool), "mail.contoso.com", None, now=later) == pool["mail_new"]
    much_later = NOW + 400 * DAY  # both CA-issued expired: the self-signed one
    assert select_certificate(_all(pool), "mail.contoso.com", None, now=much_later) == pool["ex01"]
    too_late = NOW + 6 * 365 * DAY
    assert select_certificate(_all(pool), "mail.contoso.com", None, now=too_late) is None
    named = "<S>" + pool["mail_old"].subject
    assert select_certificate(_all(pool), "x", named, now=much_later) is None
