"""Certificate-related config values: a receive connector's TlsDomainCapabilities (syntax,
values, validation: exchange.md §4.4), the entries of the domain secure lists (exchange.md §4.2),
the name of exchsim's required client certificate (exchange.md §4.9) and what an unavailable CRL
means (exchange.md §4.8).

Each entry is ``<domain>:<Capability>[,<Capability>...]``; the domain is a domain name, a
wildcard ``*.domain`` or ``NO-TLS`` (sessions without TLS). In YAML it is a list of such strings
(one string is one entry), as Exchange takes the multi-valued parameter
(``"contoso.com:AcceptCloudServicesMail","fabrikam.com:AcceptOorgProtocol"``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from exchsim.config.syntax import is_domain_name, is_host_name

NO_TLS = "NO-TLS"


class Capability(enum.StrEnum):
    """SmtpReceiveCapabilities, the values exchange.md §4.4 lists."""

    NONE = "None"
    ACCEPT_OORG_HEADER = "AcceptOorgHeader"
    ACCEPT_OORG_PROTOCOL = "AcceptOorgProtocol"
    ACCEPT_PROXY_PROTOCOL = "AcceptProxyProtocol"
    ACCEPT_PROXY_FROM_PROTOCOL = "AcceptProxyFromProtocol"
    ACCEPT_PROXY_TO_PROTOCOL = "AcceptProxyToProtocol"
    ACCEPT_XATTR_PROTOCOL = "AcceptXAttrProtocol"
    ACCEPT_ORG_HEADERS = "AcceptOrgHeaders"
    ACCEPT_XSYSPROBE_PROTOCOL = "AcceptXSysProbeProtocol"
    ACCEPT_CROSS_FOREST_MAIL = "AcceptCrossForestMail"
    ACCEPT_CLOUD_SERVICES_MAIL = "AcceptCloudServicesMail"
    ALLOW_SUBMIT = "AllowSubmit"
    ACCEPT_XORIGINAL_FROM_PROTOCOL = "AcceptXOriginalFromProtocol"
    ALLOW_CONSUMER_MAIL = "AllowConsumerMail"


_BY_LOWER = {c.value.lower(): c for c in Capability}
ALLOWED_TEXT = ", ".join(c.value for c in Capability)


@dataclass(frozen=True, slots=True)
class DomainCapabilities:
    """One entry: the domain (lower-case, ``NO-TLS`` as written) and what it is granted."""

    domain: str
    capabilities: frozenset[Capability]

    @property
    def no_tls(self) -> bool:
        return self.domain == NO_TLS

    def format(self) -> str:
        names = [c.value for c in Capability if c in self.capabilities] or [Capability.NONE.value]
        return f"{self.domain}:{','.join(names)}"


def parse_domain_capabilities(value: Any) -> DomainCapabilities:
    """``contoso.com:AcceptCloudServicesMail`` -> DomainCapabilities; ValueError says what is
    allowed."""
    if isinstance(value, DomainCapabilities):
        return value
    if not isinstance(value, str):
        raise ValueError("expected '<domain>:<capability>[,<capability>...]'")
    domain, sep, rest = value.strip().partition(":")
    domain = domain.strip()
    if not sep or not domain or not rest.strip():
        raise ValueError(f"expected '<domain>:<capability>[,<capability>...]' "
                         f"like contoso.com:AcceptCloudServicesMail, not {value!r}")
    if domain.upper() == NO_TLS:
        domain = NO_TLS
    elif not is_domain_name(domain):
        raise ValueError(f"{domain!r} is not a domain name, a wildcard like *.contoso.com "
                         f"or {NO_TLS}")
    else:
        domain = domain.lower().rstrip(".")
    found: set[Capability] = set()
    for name in rest.split(","):
        capability = _BY_LOWER.get(name.strip().lower())
        if capability is None:
            raise ValueError(f"{name.strip()!r} is not a capability; allowed: {ALLOWED_TEXT}")
        found.add(capability)
    if Capability.NONE in found and len(found) > 1:
        raise ValueError("None cannot be combined with other capabilities")
    found.discard(Capability.NONE)
    return DomainCapabilities(domain, frozenset(found))


def format_domain_capabilities(value: DomainCapabilities) -> str:
    return value.format()


def duplicate_domains(entries: tuple[DomainCapabilities, ...]) -> list[str]:
    """Domains named by more than one entry (the cmdlet keeps one entry per domain)."""
    seen: set[str] = set()
    out: list[str] = []
    for entry in entries:
        if entry.domain in seen and entry.domain not in out:
            out.append(entry.domain)
        seen.add(entry.domain)
    return out


def one_or_list(value: Any) -> Any:
    """One string is one entry (an entry's capabilities are themselves comma-separated)."""
    return [value] if isinstance(value, str) else value


def secure_domain(value: str) -> str:
    """An entry of TLS*DomainSecureList: an exact domain, no wildcard (exchange.md §4.2)."""
    if "*" in value or not is_domain_name(value):
        raise ValueError("expected a domain name like partner.example; wildcards "
                         "are not allowed in a domain secure list (exchange.md §4.2)")
    return value.lower().rstrip(".")


def client_certificate_name(value: str) -> str:
    """ExchsimRequireClientCertificate: a host name (exchange.md §4.9)."""
    if not is_host_name(value.rstrip(".")):
        raise ValueError("expected a host name like relay.contoso.com")
    return value.lower().rstrip(".")


class RevocationOffline(enum.StrEnum):
    """What a client certificate chain whose CRLs cannot be had gets (exchange.md §4.8)."""

    FAIL = "Fail"  # Exchange's behaviour: RevocationOffline fails the validation
    ACCEPT = "Accept"  # the chain passes
