"""The organization: its own validation, accepted domains (exchange.md §8.1) and mailboxes.

The rules on accepted domains and mailboxes run on every item that is valid by itself, so that
a bad item elsewhere (which fails the Organization as a whole) does not hide them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from exchsim.config.issues import IssueLog, did_you_mean, place, show
from exchsim.config.model import (
    AcceptedDomain,
    DomainType,
    Mailbox,
    Organization,
    Server,
    ServerRole,
    misshapen,
)
from exchsim.config.prose import validate
from exchsim.config.syntax import address_domain, smtp_address
from exchsim.config.vocabulary import domain_matches

__all__ = [
    "valid_items",
    "validate_accepted_domains",
    "validate_mailboxes",
    "validate_organization",
]

_ORDER = place("Organization")


def valid_items(raw: object, model: type[Any]) -> list[tuple[int, Any]]:
    """(index, object) of every item of the list ``raw`` that is a valid ``model`` by itself."""
    out: list[tuple[int, Any]] = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        obj = validate(model, item, "", None)
        if obj is not None:
            out.append((i, obj))
    return out


def validate_organization(
    raw: object, servers: Sequence[Server], log: IssueLog
) -> tuple[Organization | None, str | None]:
    """Validate ``Organization``; return it (if valid) and the NetBIOS name (if it is known)."""
    if not isinstance(raw, dict):
        log.add(
            "Organization",
            raw,
            f"{show(raw)} is not allowed: expected a mapping with Name, AcceptedDomains, "
            "TransportConfig and Mailboxes",
            order=_ORDER,
        )
        return None, None
    organization = validate(Organization, raw, "Organization", log, order=_ORDER)
    domains: list[tuple[int, AcceptedDomain]] = valid_items(raw.get("AcceptedDomains"),
                                                            AcceptedDomain)
    validate_accepted_domains(domains, log)
    mailboxes: list[tuple[int, Mailbox]] = valid_items(raw.get("Mailboxes"), Mailbox)
    validate_mailboxes(mailboxes, [d for _, d in domains], servers, log)
    if organization is not None:
        return organization, organization.netbios
    return None, _netbios(raw, [d for _, d in domains])


def _netbios(raw: Mapping[str, Any], domains: Sequence[AcceptedDomain]) -> str | None:
    """Organization.netbios for an organization that did not validate."""
    name = raw.get("NetBIOSName")
    if isinstance(name, str) and name:
        return name
    if not domains:
        return None
    default = next((d for d in domains if d.default), domains[0])
    return default.domain_name.split(".", 1)[0].upper()


def validate_accepted_domains(domains: Sequence[tuple[int, AcceptedDomain]], log: IssueLog) -> None:
    """Each domain's shape, each listed once, exactly one default (exchange.md §8.1)."""
    seen: dict[str, int] = {}
    default_at: int | None = None
    for i, domain in domains:
        path = f"Organization.AcceptedDomains[{i}] ({domain.domain_name})"
        for field, value, shape in misshapen(domain):
            key = AcceptedDomain.model_fields[field].alias or field
            log.add(f"{path}.{key}", value,
                    f"{show(value)} is not allowed: expected {shape.expected}", order=_ORDER)
        name = domain.domain_name
        lower = name.lower().rstrip(".")
        if lower in seen:
            log.add(
                f"{path}.DomainName",
                name,
                f"{show(name)} is already Organization.AcceptedDomains[{seen[lower]}]: "
                "each accepted domain is listed once",
                order=_ORDER,
            )
        seen.setdefault(lower, i)
        if domain.default:
            if default_at is None:
                default_at = i
            else:
                log.add(
                    f"{path}.Default",
                    True,
                    "Default: true is already set on Organization.AcceptedDomains"
                    f"[{default_at}]: exactly one accepted domain is the default "
                    "(exchange.md §8.1)",
                    order=_ORDER,
                )


def validate_mailboxes(
    mailboxes: Sequence[tuple[int, Mailbox]],
    domains: Sequence[AcceptedDomain],
    servers: Sequence[Server],
    log: IssueLog,
) -> None:
    """Each mailbox on a Mailbox server of the config, its addresses in an Authoritative
    accepted domain, every address and UPN owned by one mailbox."""
    authoritative = [d.domain_name for d in domains if d.domain_type is DomainType.AUTHORITATIVE]
    owners: dict[str, int] = {}
    upns: dict[str, int] = {}
    server_names = [s.name for s in servers]
    by_name = {s.name.lower(): s for s in servers}
    for i, mailbox in mailboxes:
        path = f"Organization.Mailboxes[{i}] ({mailbox.primary_smtp_address})"
        server = by_name.get(mailbox.server.lower())
        if server is None:
            log.add(
                f"{path}.Server",
                mailbox.server,
                f"{show(mailbox.server)} is not a server of this config: expected one of "
                f"{', '.join(server_names) or '(no valid server)'}",
                did_you_mean(mailbox.server, server_names),
                order=_ORDER,
                needs=(("ServerName", mailbox.server),),
            )
        elif server.role is not ServerRole.MAILBOX:
            log.add(
                f"{path}.Server",
                mailbox.server,
                f"{show(mailbox.server)} is a server of Role {server.role.value}: mailboxes "
                "live on Mailbox servers",
                order=_ORDER,
            )
        listed = [("PrimarySmtpAddress", mailbox.primary_smtp_address)] + [
            (f"EmailAddresses[{k}]", extra) for k, extra in enumerate(mailbox.email_addresses)
        ]
        for key, written in listed:
            address = smtp_address(written)
            domain = address_domain(address)
            if domain is None:
                log.add(
                    f"{path}.{key}",
                    written,
                    f"{show(written)} is not allowed: expected an SMTP address like "
                    "alice@contoso.com",
                    order=_ORDER,
                )
                continue
            if domains and not any(domain_matches(domain, a) for a in authoritative):
                log.add(
                    f"{path}.{key}",
                    written,
                    f"{show(written)} is not allowed: its domain must be an Authoritative "
                    f"accepted domain ({', '.join(authoritative) or 'there is none'}) "
                    "(exchange.md §8.1)",
                    order=_ORDER,
                )
            lower = address.lower()
            if lower in owners and owners[lower] != i:
                log.add(
                    f"{path}.{key}",
                    written,
                    f"{show(written)} is already an address of Organization.Mailboxes"
                    f"[{owners[lower]}]: an address belongs to one mailbox",
                    order=_ORDER,
                )
            owners.setdefault(lower, i)
        if mailbox.user_principal_name:
            upn = mailbox.user_principal_name.lower()
            if upn in upns:
                log.add(
                    f"{path}.UserPrincipalName",
                    mailbox.user_principal_name,
                    f"{show(mailbox.user_principal_name)} is already the UserPrincipalName of "
                    f"Organization.Mailboxes[{upns[upn]}]: a UPN belongs to one user",
                    order=_ORDER,
                )
            upns.setdefault(upn, i)
