"""Certificate-based decisions of a receive session: Domain Security (exchange.md §4.2),
TlsDomainCapabilities (exchange.md §4.4) and exchsim's required client certificate (§4.9).

Pure: the chain was judged by the runtime (:mod:`exchsim.tls.validation`, with the CRLs it
fetched) before the core asks; everything here reads values.

Domain Security, at MAIL FROM, for a session that is still anonymous and a sender whose domain
is in ``TLSReceiveDomainSecureList`` (exact match), in Exchange's order:

1. connector ``DomainSecureEnabled`` false: ``451 4.7.3 The admin has temporarily disallowed
   this secure domain``;
2. no TLS: ``530 5.7.1 Not authenticated`` when STARTTLS is offered, else ``454 4.7.0
   Temporary authentication failure``;
3. TLS without a client certificate: ``530 5.7.1 Not authenticated``;
4. a chain that is not valid, or whose names do not match the domain: ``454 4.7.5 Certificate
   validation failure``;
5. otherwise the session is the Partner for that domain (AuthMechanism 02, MutualTLS).

A sender whose domain is not in the list is not concerned, whatever certificate it showed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from exchsim.config.capabilities import Capability, DomainCapabilities
from exchsim.config.model import ReceiveConnector
from exchsim.config.vocabulary import Right
from exchsim.policy import replies
from exchsim.policy.permissions import Identity, IdentityKind, Rights
from exchsim.policy.replies import Reply
from exchsim.tls.validation import ChainStatus, ChainVerdict, matches_domain

MUTUAL_TLS = "02"  # AuthMechanism MutualTLS (exchange.md §5.2)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What MAIL FROM does about a certificate: refuse with ``reply``, or take ``identity``."""

    reply: Reply | None = None
    identity: Identity | None = None
    reason: str = ""


def domain_security(
    *,
    secure_domains: Collection[str],
    connector: ReceiveConnector,
    identity: Identity,
    tls_active: bool,
    starttls_offered: bool,
    verdict: ChainVerdict | None,
    sender_domain: str,
) -> Outcome | None:
    """The five steps of the module docstring; None when Domain Security does not apply."""
    domain = sender_domain.lower().rstrip(".")
    if identity.kind is not IdentityKind.ANONYMOUS or not domain or domain not in secure_domains:
        return None
    if not connector.domain_secure_enabled:
        return Outcome(replies.SECURE_DOMAIN_DISALLOWED,
                       reason=f"{domain} is domain secure; DomainSecureEnabled is false")
    refusal = _certificate_refusal(tls_active, starttls_offered, verdict, domain)
    if refusal is not None:
        return refusal
    return Outcome(identity=Identity(IdentityKind.PARTNER, domain, MUTUAL_TLS),
                   reason=f"mutual TLS for {domain}")


def required_certificate(
    *,
    connector: ReceiveConnector,
    identity: Identity,
    tls_active: bool,
    starttls_offered: bool,
    verdict: ChainVerdict | None,
) -> Outcome | None:
    """exchsim's ExchsimRequireClientCertificate (exchange.md §4.9), at MAIL FROM: the same
    replies as Domain Security; a session whose certificate is valid for the connector's name
    becomes an externally secured server (the rights its PermissionGroups give
    ``MS Exchange\\Externally Secured Servers``), with AuthMechanism 02."""
    name = connector.exchsim_require_client_certificate
    if name is None or identity.kind is not IdentityKind.ANONYMOUS:
        return None
    refusal = _certificate_refusal(tls_active, starttls_offered, verdict, name)
    if refusal is not None:
        return refusal
    return Outcome(identity=Identity(IdentityKind.EXTERNALLY_SECURED, name, MUTUAL_TLS),
                   reason=f"client certificate for {name}")


def _certificate_refusal(tls_active: bool, starttls_offered: bool,
                         verdict: ChainVerdict | None, name: str) -> Outcome | None:
    if not tls_active:
        reply = (replies.SECURE_DOMAIN_NOT_AUTHENTICATED if starttls_offered
                 else replies.AUTH_TEMPORARY_FAILURE)
        return Outcome(reply, reason="no TLS")
    if verdict is None or verdict.status is ChainStatus.EMPTY_CERTIFICATE:
        return Outcome(replies.SECURE_DOMAIN_NOT_AUTHENTICATED, reason="no client certificate")
    status = verdict.status_for(name)
    if not status.trusted:
        return Outcome(replies.CERTIFICATE_VALIDATION_FAILURE,
                       reason=f"client certificate {status} for {name}")
    return None


# --- TlsDomainCapabilities ---------------------------------------------------------------------

#: The capabilities that change what exchsim does, as rights of the session (exchange.md §4.4);
#: the others are parsed, logged and otherwise inert.
_RIGHTS: dict[Capability, Rights] = {
    Capability.ALLOW_SUBMIT: frozenset({Right.SUBMIT}),
    Capability.ACCEPT_ORG_HEADERS: frozenset({Right.ACCEPT_HEADERS_ORGANIZATION}),
    Capability.ACCEPT_CROSS_FOREST_MAIL: frozenset(
        {Right.ACCEPT_HEADERS_ORGANIZATION, Right.ACCEPT_HEADERS_FOREST}),
    Capability.ACCEPT_CLOUD_SERVICES_MAIL: frozenset(
        {Right.ACCEPT_HEADERS_ORGANIZATION, Right.ACCEPT_HEADERS_FOREST,
         Right.ACCEPT_AUTHENTICATION_FLAG, Right.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER}),
    Capability.ACCEPT_PROXY_FROM_PROTOCOL: frozenset({Right.ACCEPT_XPROXYFROM}),
    Capability.ACCEPT_XATTR_PROTOCOL: frozenset({Right.ACCEPT_XATTR}),
    Capability.ACCEPT_XSYSPROBE_PROTOCOL: frozenset({Right.ACCEPT_XSYSPROBE}),
}
INERT = frozenset(c for c in Capability if c not in _RIGHTS and c is not Capability.NONE)


def capability_rights(capabilities: Iterable[Capability]) -> Rights:
    out: set[Right] = set()
    for capability in capabilities:
        out |= _RIGHTS.get(capability, frozenset())
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Granted:
    """The capabilities a session holds and the protocol log's words for them."""

    capabilities: frozenset[Capability]
    status: str  # the Status='...' of the TlsDomainCapabilities line
    domain: str | None = None

    def log_text(self) -> str:
        names = [c.value for c in Capability if c in self.capabilities]
        text = f"TlsDomainCapabilities='{', '.join(names) or 'None'}'; Status='{self.status}'"
        return text + (f"; Domain='{self.domain}'" if self.domain else "")


def granted_capabilities(entries: Iterable[DomainCapabilities], *, tls_active: bool,
                         verdict: ChainVerdict | None) -> Granted:
    """What TlsDomainCapabilities grants this session (exchange.md §4.4): ``NO-TLS`` entries
    without TLS; with TLS, the entry of a domain the validated certificate's names match (an
    exact entry before a wildcard one)."""
    entries = tuple(entries)
    if not tls_active:
        caps = frozenset(c for e in entries if e.no_tls for c in e.capabilities)
        return Granted(caps, "NoTls")
    if verdict is None or verdict.status is ChainStatus.EMPTY_CERTIFICATE:
        return Granted(frozenset(), "NoRemoteCertificate")
    if not verdict.trusted:
        return Granted(frozenset(), "CertificateValidationFailure")
    ordered = sorted((e for e in entries if not e.no_tls), key=lambda e: e.domain.startswith("*"))
    for entry in ordered:
        if _entry_matches(entry.domain, verdict.names):
            return Granted(entry.capabilities, "Success", entry.domain)
    return Granted(frozenset(), "DomainMismatch")


def _entry_matches(domain: str, names: tuple[str, ...]) -> bool:
    if domain.startswith("*."):
        return any(n.endswith(domain[1:]) for n in names)
    return matches_domain(names, domain)
