"""Outbound Domain Security (exchsim/policy/sendsecure.py, exchange.md §4.3): when it applies,
and the verdict on the remote server, with real certificates and `now` pinned."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from exchsim.config.sendconnector import SendConnector
from exchsim.policy import replies
from exchsim.policy.sendsecure import domain_secure, judge_remote, judge_remote_chain
from exchsim.tls.validation import ChainStatus, ChainVerdict, validate_chain
from tests.certfactory import DAY, T0, lab_pki, make_ca, make_leaf

NOW = T0
PKI = lab_pki()
ANCHORS = (PKI.root.cert,)
PARTNER = PKI.leaf("mail.partner.example", sans=["mail.partner.example", "partner.example"])
SECURE = ("partner.example",)


def connector(**fields: Any) -> SendConnector:
    return SendConnector.model_validate(
        {"Name": "To Partner", "AddressSpaces": ["partner.example"], **fields})


def test_it_applies_to_a_listed_domain_through_a_domain_secure_dns_connector() -> None:
    secure = connector(DomainSecureEnabled=True)
    assert domain_secure(secure, SECURE, "partner.example")
    assert domain_secure(secure, ("Partner.Example",), "PARTNER.example.")  # case, root dot
    # Exact domains only: a subdomain or a parent of a listed domain is not concerned.
    assert not domain_secure(secure, SECURE, "mail.partner.example")
    assert not domain_secure(secure, ("mail.partner.example",), "partner.example")
    assert not domain_secure(secure, SECURE, "fabrikam.example")
    assert not domain_secure(secure, (), "partner.example")
    # The connector must have DomainSecureEnabled (default false) ...
    assert not domain_secure(connector(), SECURE, "partner.example")
    # ... and be able to: DNS routing, STARTTLS not ignored (the config refuses the others).
    smart = SendConnector.model_construct(**{**secure.__dict__, "smart_hosts": ("[127.0.0.9]",),
                                             "dns_routing_enabled": False})
    assert not domain_secure(smart, SECURE, "partner.example")
    ignoring = SendConnector.model_construct(**{**secure.__dict__, "ignore_starttls": True})
    assert not domain_secure(ignoring, SECURE, "partner.example")


def test_a_valid_chain_naming_the_domain_may_send() -> None:
    assert judge_remote_chain("partner.example", PKI.chain(PARTNER), ANCHORS, NOW,
                              PKI.crls()) is None
    # A wildcard above the domain names it too (the receive side's rule, exchange.md §4.8).
    wild = PKI.leaf("*.example", sans=["*.example"])
    assert judge_remote_chain("partner.example", PKI.chain(wild), ANCHORS, NOW,
                              PKI.crls()) is None
    # The leaf alone, with the issuing CA known as an intermediate.
    assert judge_remote_chain("partner.example", [PARTNER.der], ANCHORS, NOW, PKI.crls(),
                              intermediates=(PKI.intermediate.cert,)) is None


def test_no_starttls_or_a_failed_handshake_never_sends_in_clear() -> None:
    failure = judge_remote("partner.example", starttls_offered=False, tls_error=None,
                           verdict=None)
    assert failure is not None and failure.reply == replies.STARTTLS_REQUIRED
    assert failure.text == ("451 5.7.3 STARTTLS is required to send mail; partner.example is "
                            "domain secure; the remote server does not offer STARTTLS")
    failure = judge_remote("partner.example", starttls_offered=True,
                           tls_error="UnknownCredentials", verdict=None)
    assert failure is not None and failure.reply == replies.STARTTLS_REQUIRED
    assert failure.detail.endswith("TLS negotiation failed with error UnknownCredentials")


def status_of(chain: list[bytes], domain: str = "partner.example", **crl: Any) -> ChainStatus:
    failure = judge_remote_chain(domain, chain, ANCHORS, NOW, crl.get("crls", PKI.crls()))
    assert failure is not None
    assert failure.reply == replies.CERTIFICATE_VALIDATION_FAILURE
    assert failure.status is not None
    assert failure.text == (f"454 4.7.5 Certificate validation failure; {domain} is domain "
                            f"secure; the remote server's certificate status {failure.status}")
    return failure.status


@pytest.mark.parametrize(("chain", "status"), [
    # names another domain
    ([PKI.leaf("mail.fabrikam.example").der, PKI.intermediate.der], ChainStatus.SUBJECT_MISMATCH),
    # the host's name only: Domain Security wants the domain's
    ([PKI.leaf("mail.partner.example").der, PKI.intermediate.der],
     ChainStatus.SUBJECT_MISMATCH),
    # a CA nobody trusts
    ([make_leaf(make_ca("Other CA", slot=3), "partner.example").der], ChainStatus.UNTRUSTED_ROOT),
    # out of its dates
    ([PKI.leaf("partner.example", not_after=NOW - DAY).der, PKI.intermediate.der],
     ChainStatus.UNTRUSTED_TIME),
    # clientAuth only
    ([PKI.leaf("partner.example", eku=[ExtendedKeyUsageOID.CLIENT_AUTH]).der, PKI.intermediate.der], ChainStatus.WRONG_USAGE),
    # self-signed
    ([make_leaf(None, "partner.example").der], ChainStatus.UNTRUSTED_ROOT),
])
def test_each_certificate_fault_keeps_the_message(chain: list[bytes],
                                                   status: ChainStatus) -> None:
    assert status_of(chain) is status


def test_revoked_and_unknown_revocation_keep_the_message() -> None:
    assert status_of(PKI.chain(PARTNER), crls=PKI.crls([PARTNER])) is ChainStatus.REVOKED
    assert status_of(PKI.chain(PARTNER), crls={}) is ChainStatus.REVOCATION_OFFLINE
    # Judged a day after its CRL's nextUpdate: stale, so unknown.
    stale = judge_remote_chain("partner.example", PKI.chain(PARTNER), ANCHORS, NOW + 31 * DAY,
                               PKI.crls())
    assert stale is not None and stale.status is ChainStatus.REVOCATION_OFFLINE


def test_no_remote_certificate_keeps_the_message() -> None:
    for verdict in (None, ChainVerdict(ChainStatus.EMPTY_CERTIFICATE)):
        failure = judge_remote("partner.example", starttls_offered=True, tls_error=None,
                               verdict=verdict)
        assert failure is not None and failure.status is ChainStatus.EMPTY_CERTIFICATE
        assert failure.text == ("454 4.7.5 Certificate validation failure; partner.example is "
                                "domain secure; the remote server presented no certificate")


def test_a_verdict_judged_by_the_runtime_is_read_the_same_way() -> None:
    verdict = validate_chain(PKI.chain(PARTNER), ANCHORS, NOW, PKI.crls())
    assert judge_remote("partner.example", starttls_offered=True, tls_error=None,
                        verdict=verdict) is None
    other = judge_remote("fabrikam.example", starttls_offered=True, tls_error=None,
                         verdict=verdict)
    assert other is not None and other.status is ChainStatus.SUBJECT_MISMATCH
