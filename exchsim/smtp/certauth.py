"""The session's use of a client certificate: protocol-log lines, TlsDomainCapabilities at the
EHLO after TLS, Domain Security and exchsim's required certificate at MAIL FROM.

The certificate was judged by the runtime right after the handshake (the CRLs of the chain
fetched within a bound, then :func:`exchsim.tls.validation.validate_chain`), and the verdict
came in with :class:`~exchsim.smtp.message.TlsInfo`; the decisions are
:mod:`exchsim.policy.domainsecure`'s. No I/O here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchsim.policy import domainsecure
from exchsim.policy.permissions import DIRECT_TRUST_TLS, Identity, IdentityKind
from exchsim.policy.rules import MailCommand, domain_of
from exchsim.tls.validation import EMPTY, ChainVerdict, describe

if TYPE_CHECKING:
    from exchsim.smtp.protocol import SessionCore

REMOTE_CERTIFICATE = ("Remote certificate Subject Issuer name Serial number Thumbprint "
                      "Not before Not after Subject alternate names")


def verdict(s: SessionCore) -> ChainVerdict | None:
    """The judged client certificate of a STARTTLS session (EMPTY when none was presented)."""
    tls = s.tls
    if tls is None or tls.anonymous:
        return None
    if tls.verdict is not None:
        return tls.verdict
    return EMPTY if not tls.peer_chain and tls.peer_der is None else None


def tls_established(s: SessionCore) -> None:
    """Right after the handshake: the certificate the client presented, if any."""
    tls = s.tls
    if tls is None or tls.anonymous:
        return
    leaf = tls.peer_chain[0] if tls.peer_chain else tls.peer_der
    if leaf is not None:
        s.info(" " + describe(leaf), REMOTE_CERTIFICATE)  # leading space: as Sending certificate


def direct_trust(s: SessionCore) -> None:
    """After X-ANONYMOUSTLS: a certificate of a server this one trusts directly (an Edge and
    the Mailbox servers of its subscription, policy/edgetrust.py) authenticates the session
    as that Exchange server, AuthMechanism DirectTrustTLS, with no X-EXPS (exchange.md §4.1
    item 3; exchange.md §7.6). The protocol log's line for it is exchsim's wording (no public
    sample)."""
    tls = s.tls
    if tls is None or not tls.anonymous or tls.peer_der is None:
        return
    for fqdn, der in s.runtime.direct_trust_certs.items():
        if der == tls.peer_der:
            s.set_identity(Identity(IdentityKind.EXCHANGE_SERVER, fqdn, DIRECT_TRUST_TLS))
            s.info(fqdn, "authenticated by Direct Trust (DirectTrustTLS)")
            return


def hello_after_tls(s: SessionCore) -> None:
    """The first HELO / EHLO after STARTTLS: the chain status and TlsDomainCapabilities lines
    (exchange.md §1.6, §4.4), and the capabilities the certificate grants. Without TLS, the
    ``NO-TLS`` entries' capabilities at the first HELO / EHLO."""
    assert s.connector is not None
    if s.capabilities_decided:
        return
    s.capabilities_decided = True
    tls_active = s.tls is not None and not s.tls.anonymous
    if s.tls is not None and s.tls.anonymous:
        return
    judged = verdict(s)
    granted = domainsecure.granted_capabilities(
        s.connector.tls_domain_capabilities, tls_active=tls_active, verdict=judged)
    if tls_active:
        status = judged.status if judged is not None else EMPTY.status
        s.info("", f"Client certificate chain validation status: '{status}'")
        s.info("", granted.log_text())
    if granted.capabilities:
        s.capabilities = granted.capabilities
        s.set_identity(s.identity, s.mailbox)


def mail(s: SessionCore, parsed: MailCommand) -> bool:
    """Domain Security (exchange.md §4.2) and exchsim's required client certificate (§4.9) at
    MAIL FROM: True when the command was answered here (refused)."""
    connector = s.connector
    assert connector is not None
    tls_active = s.tls is not None
    offered = tls_active or s.advertised("STARTTLS")
    judged = verdict(s)
    outcome = domainsecure.required_certificate(
        connector=connector, identity=s.identity, tls_active=tls_active,
        starttls_offered=offered, verdict=judged)
    if outcome is None:
        outcome = domainsecure.domain_security(
            secure_domains=s.runtime.lab.organization.transport_config
            .tls_receive_domain_secure_list,
            connector=connector, identity=s.identity, tls_active=tls_active,
            starttls_offered=offered, verdict=judged, sender_domain=domain_of(parsed.address))
    if outcome is None:
        return False
    if outcome.reply is not None:
        s.reply(outcome.reply)
        return True
    assert outcome.identity is not None
    s.set_identity(outcome.identity, None)
    return False
