"""Words the whole project shares: rights, principals, accepted domains, the names of a mailbox.

They live once, here, below every module that uses them: the loader checks a config against
them, ``policy/`` decides with them, the daemon builds its logon table from them. Nothing here
imports from outside ``exchsim.config``.

* ``Right``: the extended rights a receive connector ACE can grant (exchange.md §3.6), in Exchange's
  spelling and order; ``EXTENDED_RIGHTS`` is the same list as strings.
* Well-known principals (exchange.md §3.6), and the per-organization ``<NETBIOS>\\...`` groups.
* ``match_accepted_domain``: which accepted domain covers a domain (exchange.md §8.1).
* ``smtp_address`` / ``domain_of``: an address as ``EmailAddresses`` writes it, its domain.
* ``principal_names`` / ``logon_names`` / ``logon_table``: the names a mailbox is known by in an
  ACE, and the names its user may log on with.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from exchsim.config.model import AcceptedDomain, Mailbox, Organization
from exchsim.config.syntax import smtp_address

__all__ = [
    "ANONYMOUS_LOGON",
    "AUTHENTICATED_USERS",
    "EDGE_TRANSPORT_SERVERS",
    "EXTENDED_RIGHTS",
    "EXTERNALLY_SECURED_SERVERS",
    "HUB_TRANSPORT_SERVERS",
    "PARTNER_SERVERS",
    "WELL_KNOWN_PRINCIPALS",
    "Right",
    "domain_matches",
    "domain_of",
    "exchange_legacy_interop",
    "exchange_servers",
    "known_principals",
    "logon_names",
    "logon_table",
    "match_accepted_domain",
    "principal_names",
    "smtp_address",
]


class Right(enum.StrEnum):
    """The extended rights of a receive connector ACE (exchange.md §3.6)."""

    SUBMIT = "ms-Exch-SMTP-Submit"
    ACCEPT_ANY_RECIPIENT = "ms-Exch-SMTP-Accept-Any-Recipient"
    ACCEPT_ANY_SENDER = "ms-Exch-SMTP-Accept-Any-Sender"
    ACCEPT_AUTHORITATIVE_DOMAIN_SENDER = "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender"
    ACCEPT_AUTHENTICATION_FLAG = "ms-Exch-SMTP-Accept-Authentication-Flag"
    ACCEPT_EXCH50 = "ms-Exch-SMTP-Accept-Exch50"
    BYPASS_ANTI_SPAM = "ms-Exch-Bypass-Anti-Spam"
    BYPASS_MESSAGE_SIZE_LIMIT = "ms-Exch-Bypass-Message-Size-Limit"
    ACCEPT_HEADERS_ROUTING = "ms-Exch-Accept-Headers-Routing"
    ACCEPT_HEADERS_FOREST = "ms-Exch-Accept-Headers-Forest"
    ACCEPT_HEADERS_ORGANIZATION = "ms-Exch-Accept-Headers-Organization"
    ACCEPT_XSHADOW = "ms-Exch-SMTP-Accept-XShadow"
    ACCEPT_XPROXYFROM = "ms-Exch-SMTP-Accept-XProxyFrom"
    ACCEPT_XSESSIONPARAMS = "ms-Exch-SMTP-Accept-XSessionParams"
    ACCEPT_XSYSPROBE = "ms-Exch-SMTP-Accept-XSysProbe"
    ACCEPT_XATTR = "ms-Exch-SMTP-Accept-Xattr"
    SEND_XMESSAGECONTEXT_ADRECIPIENTCACHE = "ms-Exch-SMTP-Send-XMessageContext-ADRecipientCache"
    SEND_XMESSAGECONTEXT_EXTENDEDPROPERTIES = (
        "ms-Exch-SMTP-Send-XMessageContext-ExtendedProperties"
    )
    SEND_XMESSAGECONTEXT_FASTINDEX = "ms-Exch-SMTP-Send-XMessageContext-FastIndex"


#: Every extended right, in Exchange's spelling and order.
EXTENDED_RIGHTS: tuple[str, ...] = tuple(right.value for right in Right)

# --- principals (exchange.md §3.6) ------------------------------------------------------------

ANONYMOUS_LOGON = "NT AUTHORITY\\ANONYMOUS LOGON"
AUTHENTICATED_USERS = "NT AUTHORITY\\Authenticated Users"
EXTERNALLY_SECURED_SERVERS = "MS Exchange\\Externally Secured Servers"
PARTNER_SERVERS = "MS Exchange\\Partner Servers"
EDGE_TRANSPORT_SERVERS = "MS Exchange\\Edge Transport Servers"
HUB_TRANSPORT_SERVERS = "MS Exchange\\Hub Transport Servers"

#: Principals that exist in every organization; ``<NETBIOS>\\...`` ones depend on the config.
WELL_KNOWN_PRINCIPALS: tuple[str, ...] = (
    ANONYMOUS_LOGON,
    AUTHENTICATED_USERS,
    EXTERNALLY_SECURED_SERVERS,
    PARTNER_SERVERS,
    EDGE_TRANSPORT_SERVERS,
    HUB_TRANSPORT_SERVERS,
)


def exchange_servers(netbios: str) -> str:
    return f"{netbios}\\Exchange Servers"


def exchange_legacy_interop(netbios: str) -> str:
    return f"{netbios}\\ExchangeLegacyInterop"


# --- addresses and accepted domains (exchange.md §8.1) ----------------------------------------


def domain_of(address: str) -> str:
    """The domain of an address, lower-cased, without a trailing dot."""
    return address.rsplit("@", 1)[-1].strip().lower().rstrip(".")


def domain_matches(domain: str, accepted: str) -> bool:
    """``contoso.com`` matches itself; ``*.contoso.com`` matches contoso.com and subdomains."""
    domain, accepted = domain.lower(), accepted.lower()
    if accepted.startswith("*."):
        base = accepted[2:]
        return domain == base or domain.endswith("." + base)
    return domain == accepted


def match_accepted_domain(
    domains: Sequence[AcceptedDomain], domain: str
) -> AcceptedDomain | None:
    """The most specific accepted domain covering ``domain`` (``*.x`` covers x and below)."""
    best: AcceptedDomain | None = None
    best_len = -1
    for entry in domains:
        if not domain_matches(domain, entry.domain_name):
            continue
        name = entry.domain_name.lower()
        # An exact entry beats a wildcard of the same name.
        length = len(name) - 2 if name.startswith("*.") else len(name) + 1
        if length > best_len:
            best, best_len = entry, length
    return best


# --- the names of a mailbox ---------------------------------------------------------------------


def principal_names(mailbox: Mailbox, netbios: str | None) -> tuple[str, ...]:
    """The names an ACE may give a mailbox's user by: ``NETBIOS\\account``, the primary SMTP
    address and the UPN (without ``NETBIOS\\account`` when the NetBIOS name is not known)."""
    names = [f"{netbios}\\{mailbox.account}"] if netbios is not None else []
    names.append(mailbox.primary_smtp_address)
    if mailbox.user_principal_name:
        names.append(mailbox.user_principal_name)
    return tuple(names)


def logon_names(mailbox: Mailbox, netbios: str) -> tuple[str, ...]:
    """Every name the mailbox's user may log on with: its addresses, the account,
    ``NETBIOS\\account`` and the UPN."""
    names = [*mailbox.addresses, mailbox.account, f"{netbios}\\{mailbox.account}"]
    if mailbox.user_principal_name:
        names.append(mailbox.user_principal_name)
    return tuple(names)


def logon_table(organization: Organization) -> dict[str, Mailbox]:
    """Lower-cased logon name -> mailbox; the first mailbox to claim a name keeps it."""
    table: dict[str, Mailbox] = {}
    for mailbox in organization.mailboxes:
        for name in logon_names(mailbox, organization.netbios):
            table.setdefault(name.lower(), mailbox)
    return table


def known_principals(netbios: str | None, mailboxes: Iterable[Mailbox]) -> dict[str, str]:
    """Every principal an ACE may name, lower-cased -> canonical spelling."""
    mailboxes = list(mailboxes)
    names = list(WELL_KNOWN_PRINCIPALS)
    if netbios is not None:
        names += [exchange_servers(netbios), exchange_legacy_interop(netbios)]
        names += [f"{netbios}\\{m.account}" for m in mailboxes]
    for mailbox in mailboxes:
        names += principal_names(mailbox, None)
    out: dict[str, str] = {}
    for name in names:
        out.setdefault(name.lower(), name)
    return out
