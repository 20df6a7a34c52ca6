"""The pure certificate validator of Domain Security (exchsim/tls/validation.py), `now` pinned."""

from __future__ import annotations

import datetime

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from exchsim.tls.validation import (
    ChainStatus,
    OfflineAction,
    certificate_names,
    describe,
    matches_domain,
    revocation_urls,
    validate_chain,
)
from tests.certfactory import DAY, T0, lab_pki, make_ca, make_leaf

S = datetime.timedelta(seconds=1)
NOW = T0
PKI = lab_pki()
ANCHORS = (PKI.root.cert,)
PARTNER = PKI.leaf("mail.partner.example", sans=["mail.partner.example", "partner.example"])


def check(chain: list[bytes], now: datetime.datetime = NOW, crls: dict[str, bytes | None] | None = None,
          offline: OfflineAction = OfflineAction.FAIL) -> ChainStatus:
    return validate_chain(chain, ANCHORS, now, PKI.crls() if crls is None else crls,
                          offline).status


def test_valid_partner_chain() -> None:
    verdict = validate_chain(PKI.chain(PARTNER), ANCHORS, NOW, PKI.crls())
    assert verdict.status is ChainStatus.VALID and verdict.trusted
    assert verdict.names == ("mail.partner.example", "partner.example")
    assert verdict.status_for("partner.example") is ChainStatus.VALID
    assert verdict.status_for("other.example") is ChainStatus.SUBJECT_MISMATCH


def test_no_certificate_is_empty() -> None:
    assert check([]) is ChainStatus.EMPTY_CERTIFICATE


def test_dates_are_inclusive_at_both_ends() -> None:
    leaf = PKI.leaf("partner.example", not_before=NOW - DAY, not_after=NOW + DAY)
    last = leaf.cert.not_valid_after_utc
    first = leaf.cert.not_valid_before_utc
    crls = PKI.crls(next_update=NOW + 30 * DAY)
    assert check(PKI.chain(leaf), last, crls) is ChainStatus.VALID  # the last valid second
    assert check(PKI.chain(leaf), last + S, crls) is ChainStatus.UNTRUSTED_TIME
    assert check(PKI.chain(leaf), first, crls) is ChainStatus.VALID
    assert check(PKI.chain(leaf), first - S, crls) is ChainStatus.UNTRUSTED_TIME


def test_an_expired_intermediate_fails_the_chain() -> None:
    old = make_ca("Old Issuing CA", issuer=PKI.root, slot=2, not_after=NOW - S)
    leaf = make_leaf(old, "partner.example")
    assert validate_chain([leaf.der, old.der], ANCHORS, NOW, {}).status is ChainStatus.UNTRUSTED_TIME


def test_untrusted_root() -> None:
    other = make_ca("Nobody Trusts This CA", slot=3)
    leaf = make_leaf(other, "partner.example")
    assert check([leaf.der, other.der]) is ChainStatus.UNTRUSTED_ROOT
    assert check([leaf.der]) is ChainStatus.UNTRUSTED_ROOT


def test_missing_intermediate_is_untrusted_root() -> None:
    assert check([PARTNER.der]) is ChainStatus.UNTRUSTED_ROOT
    # ... unless the server knows it (a client such as swaks presents only its leaf).
    known = validate_chain([PARTNER.der], ANCHORS, NOW, PKI.crls(),
                           intermediates=(PKI.intermediate.cert,))
    assert known.status is ChainStatus.VALID
    assert revocation_urls([PARTNER.der], ANCHORS, (PKI.intermediate.cert,)) == (
        PKI.crl_url, PKI.root_crl_url)


def test_self_signed_leaf() -> None:
    leaf = make_leaf(None, "partner.example")
    assert check([leaf.der]) is ChainStatus.UNTRUSTED_ROOT
    # A self-signed certificate the server trusts itself (an anchor): ValidSelfSigned.
    verdict = validate_chain([leaf.der], (leaf.cert,), NOW, {})
    assert verdict.status is ChainStatus.VALID_SELF_SIGNED and verdict.trusted


def test_signature_failure() -> None:
    # Issued in the intermediate's name, signed with another key.
    forger = make_ca(PKI.intermediate.cert.subject.rfc4514_string()[3:], slot=4)
    leaf = make_leaf(forger, "partner.example")
    assert check([leaf.der, PKI.intermediate.der]) is ChainStatus.SIGNATURE_FAILURE


def test_a_leaf_cannot_issue() -> None:
    """A partner's own (CA:FALSE) certificate signing one for another domain is no issuer."""
    fake = make_leaf(PARTNER, "victim.example")
    assert check([fake.der, PARTNER.der, PKI.intermediate.der]) is ChainStatus.UNTRUSTED_ROOT


def test_eku() -> None:
    client_only = PKI.leaf("partner.example", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    assert check(PKI.chain(client_only)) is ChainStatus.WRONG_USAGE
    no_eku = PKI.leaf("partner.example", eku=None)
    assert check(PKI.chain(no_eku)) is ChainStatus.VALID  # no extension: every usage (Windows)
    # An empty EKU is malformed DER (SIZE 1..MAX): unreadable usage, never a crash.
    empty = PKI.leaf("partner.example", eku=[])
    assert check(PKI.chain(empty)) is ChainStatus.WRONG_USAGE


def test_revoked_leaf_and_intermediate() -> None:
    assert check(PKI.chain(PARTNER), crls=PKI.crls([PARTNER])) is ChainStatus.REVOKED
    crls = PKI.crls()
    from tests.certfactory import make_crl
    crls[PKI.root_crl_url] = make_crl(PKI.root, [PKI.intermediate])
    assert check(PKI.chain(PARTNER), crls=crls) is ChainStatus.REVOKED


def test_revocation_offline_fails_by_default_and_can_be_accepted() -> None:
    offline: dict[str, bytes | None] = {PKI.crl_url: None, PKI.root_crl_url: None}
    assert check(PKI.chain(PARTNER), crls=offline) is ChainStatus.REVOCATION_OFFLINE
    accepted = validate_chain(PKI.chain(PARTNER), ANCHORS, NOW, offline, OfflineAction.ACCEPT)
    assert accepted.status is ChainStatus.VALID and accepted.revocation_unchecked
    # Offline does not hide a revocation known from the other CRL.
    crls = {PKI.crl_url: PKI.crls([PARTNER])[PKI.crl_url], PKI.root_crl_url: None}
    assert check(PKI.chain(PARTNER), crls=crls, offline=OfflineAction.ACCEPT) is ChainStatus.REVOKED


def test_unusable_crls_count_as_offline() -> None:
    stale = PKI.crls(last_update=NOW - 10 * DAY, next_update=NOW - S)
    assert check(PKI.chain(PARTNER), crls=stale) is ChainStatus.REVOCATION_OFFLINE
    forged = dict(PKI.crls())
    from tests.certfactory import make_crl
    forged[PKI.crl_url] = make_crl(make_ca(PKI.intermediate.cert.subject.rfc4514_string()[3:],
                                           slot=4))
    assert check(PKI.chain(PARTNER), crls=forged) is ChainStatus.REVOCATION_OFFLINE
    garbage = {**PKI.crls(), PKI.crl_url: b"not a CRL"}
    assert check(PKI.chain(PARTNER), crls=garbage) is ChainStatus.REVOCATION_OFFLINE
    no_point = PKI.leaf("partner.example", crl_url=None)
    assert check(PKI.chain(no_point)) is ChainStatus.REVOCATION_OFFLINE


def test_revocation_urls_of_the_path_but_the_root() -> None:
    assert revocation_urls(PKI.chain(PARTNER), ANCHORS) == (PKI.crl_url, PKI.root_crl_url)
    assert revocation_urls([PARTNER.der], ANCHORS) == ()  # no path: nothing to fetch


@pytest.mark.parametrize(("names", "domain", "expected"), [
    (["partner.example"], "partner.example", True),
    (["PARTNER.example."], "partner.EXAMPLE", True),
    (["mail.partner.example"], "partner.example", False),
    (["*.partner.example"], "sub.partner.example", True),
    (["*.partner.example"], "a.b.partner.example", True),  # multi-level
    (["*.partner.example"], "partner.example", False),
    (["*.example"], "partner.example", True),
    (["*.partner.example"], "xpartner.example", False),
    (["*."], "partner.example", False),
    ([], "partner.example", False),
])
def test_name_matching(names: list[str], domain: str, expected: bool) -> None:
    assert matches_domain(names, domain) is expected


def test_names_are_the_dns_sans_else_the_cn() -> None:
    leaf = PKI.leaf("CN-Name.partner.example", sans=["a.partner.example", "*.b.partner.example"])
    assert certificate_names(leaf.cert) == ("a.partner.example", "*.b.partner.example")
    # A CN that names the domain does not count beside SANs that do not (a wrong-name certificate).
    wrong = PKI.leaf("partner.example", sans=["mail.fabrikam.example"])
    verdict = validate_chain(PKI.chain(wrong), ANCHORS, NOW, PKI.crls())
    assert verdict.status_for("partner.example") is ChainStatus.SUBJECT_MISMATCH
    no_san = PKI.leaf("CN-Only.partner.example", sans=[])
    assert certificate_names(no_san.cert) == ("cn-only.partner.example",)


def test_describe_for_the_protocol_log() -> None:
    text = describe(PARTNER.der)
    assert text.startswith("CN=mail.partner.example CN=Exchsim Test Issuing CA ")
    assert text.endswith(" mail.partner.example;partner.example")
