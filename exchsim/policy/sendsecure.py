"""Outbound Domain Security: what a send connector owes a domain of ``TLSSendDomainSecureList``,
and the verdict on the remote server (exchange.md §4.3).

Pure: the connector, the transport config and the facts of one attempt are passed in; the
remote certificate chain is judged by :func:`exchsim.tls.validation.validate_chain` with the
``now``, anchors and CRLs the caller hands over (:func:`judge_remote_chain`), or was judged by the
runtime already (:func:`judge_remote`, with the ``ChainVerdict`` of
``tls/revocation.CertificateJudge``).

**When it applies** (:func:`domain_secure`): the recipient's domain is in the organization's
``TLSSendDomainSecureList`` (exact match, case-insensitive; the list takes no wildcards, the
config refuses them) and the send connector that carries the message has
``DomainSecureEnabled $true``. The connector rules that make this possible, DNSRoutingEnabled
true and IgnoreSTARTTLS false, are the cmdlets' and the config's
(``config/validate/sendconnector.py``); a connector that breaks them never loads, and
:func:`domain_secure` still answers False for it. A domain in the list reached through a
connector without DomainSecureEnabled gets no Domain Security (the message goes as the
connector's own TLS settings say).

**What it demands**, in this order, the first unmet demand being the failure:

1. the remote server offers STARTTLS (never sent in clear): else ``451 5.7.3 STARTTLS is
   required to send mail``;
2. the TLS handshake completes, with the server's certificate presented as the client
   certificate (mutual TLS): else the same reply, the handshake's error in the detail;
3. the remote certificate chain is valid (a trusted root, in its dates, serverAuth, revocation
   checked for the whole chain but the root, as on the receive side, exchange.md §4.8): else
   ``454 4.7.5 Certificate validation failure`` with the chain status (``UntrustedRoot``,
   ``Revoked``, ``RevocationOffline``, ...);
4. one of the certificate's names (SAN dNSNames, else the subject CN) is the recipient's domain
   or a wildcard above it (the receive side's rule, ``tls/validation.matches_domain``): else
   the same reply with ``SubjectMismatch``.

Every failure is temporary: the message stays queued and is retried (exchange.md §4.3: Domain
Security never falls back to plain text). The replies are Exchange's own texts for the same
conditions on the receive side (exchange.md §2.2); which text Exchange's queue viewer shows for
an outbound Domain Security failure is not public, and the choice is written in exchange.md §4.3.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from exchsim.config.capabilities import RevocationOffline
from exchsim.config.sendconnector import SendConnector
from exchsim.policy import replies
from exchsim.policy.replies import Reply
from exchsim.tls.validation import ChainStatus, ChainVerdict, CrlInput, validate_chain

__all__ = [
    "SecureSendFailure",
    "domain_secure",
    "judge_remote",
    "judge_remote_chain",
    "secure_domains",
]


@dataclass(frozen=True, slots=True)
class SecureSendFailure:
    """Why a Domain Secure attempt may not send: the reply to record (queue, tracking and
    protocol logs), the chain status when the certificate was at fault, and a line for admins."""

    reply: Reply
    status: ChainStatus | None
    detail: str

    @property
    def text(self) -> str:
        """``<reply>; <detail>``, as one line for LastError and the logs."""
        return f"{self.reply.code} {self.reply.enhanced} {self.reply.text}; {self.detail}"


def secure_domains(domains: Collection[str]) -> frozenset[str]:
    """TLSSendDomainSecureList as the judgement compares it: lower-case, no trailing dot."""
    return frozenset(d.strip().rstrip(".").lower() for d in domains)


def domain_secure(connector: SendConnector, domains: Collection[str], domain: str) -> bool:
    """Whether mail for ``domain`` through ``connector`` is Domain Secured (module docstring)."""
    wanted = domain.strip().rstrip(".").lower()
    return (connector.domain_secure_enabled and connector.uses_dns
            and not connector.ignore_starttls and bool(wanted)
            and wanted in secure_domains(domains))


def judge_remote(
    domain: str,
    *,
    starttls_offered: bool,
    tls_error: str | None,
    verdict: ChainVerdict | None,
) -> SecureSendFailure | None:
    """The failure of a Domain Secure attempt to ``domain``, or None when it may send.

    ``starttls_offered``: the remote's EHLO offered STARTTLS. ``tls_error``: the handshake did
    not complete (the error's text), None when it did or was not tried. ``verdict``: the remote
    certificate chain's judgement once TLS is up (None: no certificate was presented)."""
    domain = domain.strip().rstrip(".").lower()
    if not starttls_offered:
        return SecureSendFailure(replies.STARTTLS_REQUIRED, None,
                                 f"{domain} is domain secure; the remote server does not "
                                 "offer STARTTLS")
    if tls_error is not None:
        return SecureSendFailure(replies.STARTTLS_REQUIRED, None,
                                 f"{domain} is domain secure; TLS negotiation failed with "
                                 f"error {tls_error}")
    if verdict is None or verdict.status is ChainStatus.EMPTY_CERTIFICATE:
        return _certificate(ChainStatus.EMPTY_CERTIFICATE, domain)
    status = verdict.status_for(domain)
    if not status.trusted:
        return _certificate(status, domain)
    return None


def judge_remote_chain(
    domain: str,
    chain: Sequence[bytes],
    anchors: Sequence[x509.Certificate],
    now: datetime.datetime,
    crls: Mapping[str, CrlInput],
    *,
    offline: RevocationOffline = RevocationOffline.FAIL,
    intermediates: Sequence[x509.Certificate] = (),
) -> SecureSendFailure | None:
    """:func:`judge_remote` after TLS came up, the chain (leaf first, DER) judged here with
    :func:`exchsim.tls.validation.validate_chain` at ``now``."""
    verdict = validate_chain(chain, anchors, now, crls, offline, intermediates)
    return judge_remote(domain, starttls_offered=True, tls_error=None, verdict=verdict)


def _certificate(status: ChainStatus, domain: str) -> SecureSendFailure:
    what = (" presented no certificate" if status is ChainStatus.EMPTY_CERTIFICATE
            else f"'s certificate status {status}")
    return SecureSendFailure(replies.CERTIFICATE_VALIDATION_FAILURE, status,
                             f"{domain} is domain secure; the remote server{what}")
