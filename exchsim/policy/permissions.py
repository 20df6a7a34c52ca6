"""Principals, permission groups and extended rights (exchange.md §3.6).

The words themselves (``Right``, the well-known principals, a mailbox's principal names) live
in ``exchsim.config.vocabulary``; this module decides with them.

A connector's PermissionGroups expand, by table, into allow entries (principal -> rights);
the config's ADPermissions add allow or deny entries for one connector. A session's rights
are the allowed rights of the principals its identity stands for, minus the denied ones
(deny wins, as in Active Directory).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from exchsim.config.model import ADPermission, Mailbox, PermissionGroup, ReceiveConnector
from exchsim.config.vocabulary import (
    ANONYMOUS_LOGON,
    AUTHENTICATED_USERS,
    EDGE_TRANSPORT_SERVERS,
    EXTERNALLY_SECURED_SERVERS,
    HUB_TRANSPORT_SERVERS,
    PARTNER_SERVERS,
    Right,
    exchange_legacy_interop,
    exchange_servers,
    principal_names,
)

__all__ = [
    "ANONYMOUS",
    "ANONYMOUS_LOGON",
    "AUTHENTICATED_USERS",
    "DIRECT_TRUST_TLS",
    "EDGE_TRANSPORT_SERVERS",
    "EXTERNALLY_SECURED",
    "EXTERNALLY_SECURED_SERVERS",
    "HUB_TRANSPORT_SERVERS",
    "PARTNER_RIGHTS",
    "PARTNER_SERVERS",
    "ConnectorAcl",
    "Identity",
    "IdentityKind",
    "Right",
    "Rights",
    "connector_acl",
    "exchange_legacy_interop",
    "exchange_servers",
    "mask_to_rights",
    "permission_group_entries",
    "permission_tokens",
    "principals",
    "rights_to_mask",
]


R = Right
Rights = frozenset[Right]


_ANONYMOUS: Rights = frozenset(
    {R.SUBMIT, R.ACCEPT_ANY_SENDER, R.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER, R.ACCEPT_HEADERS_ROUTING}
)
_EXCHANGE_USERS: Rights = frozenset(
    {R.SUBMIT, R.ACCEPT_ANY_RECIPIENT, R.BYPASS_ANTI_SPAM, R.ACCEPT_HEADERS_ROUTING}
)
_SECURED_SERVERS: Rights = frozenset(
    {
        R.SUBMIT,
        R.ACCEPT_ANY_RECIPIENT,
        R.ACCEPT_ANY_SENDER,
        R.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER,
        R.ACCEPT_AUTHENTICATION_FLAG,
        R.ACCEPT_EXCH50,
        R.BYPASS_ANTI_SPAM,
        R.BYPASS_MESSAGE_SIZE_LIMIT,
        R.ACCEPT_HEADERS_ROUTING,
    }
)
_EXCHANGE_SERVERS: Rights = _SECURED_SERVERS | {
    R.ACCEPT_HEADERS_FOREST,
    R.ACCEPT_HEADERS_ORGANIZATION,
    R.ACCEPT_XATTR,
    R.ACCEPT_XPROXYFROM,
    R.ACCEPT_XSESSIONPARAMS,
    R.ACCEPT_XSHADOW,
    R.ACCEPT_XSYSPROBE,
    R.SEND_XMESSAGECONTEXT_ADRECIPIENTCACHE,
    R.SEND_XMESSAGECONTEXT_EXTENDEDPROPERTIES,
    R.SEND_XMESSAGECONTEXT_FASTINDEX,
}
_LEGACY: Rights = _SECURED_SERVERS
_PARTNERS: Rights = frozenset({R.SUBMIT, R.ACCEPT_HEADERS_ROUTING})
#: What Domain Security grants the Partner it authenticates, whether or not the connector lists
#: the Partners group (exchange.md §4.2): the Partners permission group's rights.
PARTNER_RIGHTS = _PARTNERS


def permission_group_entries(group: PermissionGroup, netbios: str) -> list[tuple[str, Rights]]:
    """The allow entries one PermissionGroup puts on a connector (exchange.md §3.6 table)."""
    table: dict[PermissionGroup, list[tuple[str, Rights]]] = {
        PermissionGroup.ANONYMOUS_USERS: [(ANONYMOUS_LOGON, _ANONYMOUS)],
        PermissionGroup.EXCHANGE_USERS: [(AUTHENTICATED_USERS, _EXCHANGE_USERS)],
        PermissionGroup.EXCHANGE_SERVERS: [
            (exchange_servers(netbios), _EXCHANGE_SERVERS),
            (EDGE_TRANSPORT_SERVERS, _EXCHANGE_SERVERS),
            (HUB_TRANSPORT_SERVERS, _EXCHANGE_SERVERS),
            (EXTERNALLY_SECURED_SERVERS, _SECURED_SERVERS),
        ],
        PermissionGroup.EXCHANGE_LEGACY_SERVERS: [(exchange_legacy_interop(netbios), _LEGACY)],
        PermissionGroup.PARTNERS: [(PARTNER_SERVERS, _PARTNERS)],
    }
    return table.get(group, [])


class IdentityKind(enum.StrEnum):
    ANONYMOUS = "Anonymous"
    USER = "User"
    EXCHANGE_SERVER = "ExchangeServer"
    EXTERNALLY_SECURED = "ExternallySecured"
    PARTNER = "Partner"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the peer is, as far as this session knows."""

    kind: IdentityKind
    name: str = ""  # the user (UPN), the Exchange server FQDN or the partner domain
    mechanism: str = "00"  # AuthMechanism code of exchange.md §5.2 (hex)

    @property
    def authenticated(self) -> bool:
        return self.kind is not IdentityKind.ANONYMOUS


ANONYMOUS = Identity(IdentityKind.ANONYMOUS)
EXTERNALLY_SECURED = Identity(IdentityKind.EXTERNALLY_SECURED, "", "10")
DIRECT_TRUST_TLS = "11"
"""The AuthMechanism of a session authenticated by Direct Trust (exchange.md §4.1 item 3)."""


def principals(identity: Identity, netbios: str, mailbox: Mailbox | None = None) -> frozenset[str]:
    """The security principals an identity stands for (lower-cased for comparison)."""
    out: set[str] = set()
    if identity.kind is IdentityKind.ANONYMOUS:
        out.add(ANONYMOUS_LOGON)
    elif identity.kind is IdentityKind.USER:
        out.add(AUTHENTICATED_USERS)
        if mailbox is not None:
            out.update(principal_names(mailbox, netbios))
    elif identity.kind is IdentityKind.EXCHANGE_SERVER:
        out.update({exchange_servers(netbios), HUB_TRANSPORT_SERVERS, AUTHENTICATED_USERS})
    elif identity.kind is IdentityKind.EXTERNALLY_SECURED:
        out.add(EXTERNALLY_SECURED_SERVERS)
    elif identity.kind is IdentityKind.PARTNER:
        out.add(PARTNER_SERVERS)
    return frozenset(p.lower() for p in out)


@dataclass(frozen=True, slots=True)
class ConnectorAcl:
    """The allow and deny entries of one connector, principal names lower-cased."""

    allow: tuple[tuple[str, Rights], ...]
    deny: tuple[tuple[str, Rights], ...]

    def rights_for(self, principal_set: Iterable[str], base: Rights = frozenset()) -> Rights:
        """The allowed rights of the principals (plus ``base``), minus the denied ones."""
        held = set(principal_set)
        granted: set[Right] = set(base)
        for principal, rights in self.allow:
            if principal in held:
                granted |= rights
        for principal, rights in self.deny:
            if principal in held:
                granted -= rights
        return frozenset(granted)


def connector_acl(
    connector: ReceiveConnector, ad_permissions: Iterable[ADPermission], netbios: str
) -> ConnectorAcl:
    allow: list[tuple[str, Rights]] = []
    deny: list[tuple[str, Rights]] = []
    for group in sorted(connector.permission_groups):
        allow.extend((p.lower(), r) for p, r in permission_group_entries(group, netbios))
    identity = connector.identity.lower()
    for entry in ad_permissions:
        if entry.identity.lower() != identity:
            continue
        rights = frozenset(_right(name) for name in entry.extended_rights)
        (deny if entry.deny else allow).append((entry.user.lower(), rights))
    return ConnectorAcl(tuple(allow), tuple(deny))


def _right(name: str) -> Right:
    for right in Right:
        if right.value.lower() == name.lower():
            return right
    raise ValueError(f"unknown extended right {name!r}")


# Protocol-log tokens of the "Set Session Permissions" line, in Exchange's order (exchange.md §3.6).
_TOKENS: tuple[tuple[str, Right | None], ...] = (
    ("SMTPSubmit", R.SUBMIT),
    ("SMTPSubmitForMLS", None),
    ("SMTPAcceptAnyRecipient", R.ACCEPT_ANY_RECIPIENT),
    ("SMTPAcceptAuthenticationFlag", R.ACCEPT_AUTHENTICATION_FLAG),
    ("SMTPAcceptAnySender", R.ACCEPT_ANY_SENDER),
    ("SMTPAcceptAuthoritativeDomainSender", R.ACCEPT_AUTHORITATIVE_DOMAIN_SENDER),
    ("BypassAntiSpam", R.BYPASS_ANTI_SPAM),
    ("BypassMessageSizeLimit", R.BYPASS_MESSAGE_SIZE_LIMIT),
    ("SMTPSendEXCH50", None),
    ("SMTPAcceptEXCH50", R.ACCEPT_EXCH50),
    ("AcceptRoutingHeaders", R.ACCEPT_HEADERS_ROUTING),
    ("AcceptForestHeaders", R.ACCEPT_HEADERS_FOREST),
    ("AcceptOrganizationHeaders", R.ACCEPT_HEADERS_ORGANIZATION),
    ("SendRoutingHeaders", None),
    ("SendForestHeaders", None),
    ("SendOrganizationHeaders", None),
    ("SendAs", None),
    ("SMTPSendXShadow", None),
    ("SMTPAcceptXShadow", R.ACCEPT_XSHADOW),
    ("SMTPAcceptXProxyFrom", R.ACCEPT_XPROXYFROM),
    ("SMTPAcceptXSessionParams", R.ACCEPT_XSESSIONPARAMS),
    ("SMTPAcceptXMessageContextADRecipientCache", R.SEND_XMESSAGECONTEXT_ADRECIPIENTCACHE),
    ("SMTPAcceptXMessageContextExtendedProperties", R.SEND_XMESSAGECONTEXT_EXTENDEDPROPERTIES),
    ("SMTPAcceptXMessageContextFastIndex", R.SEND_XMESSAGECONTEXT_FASTINDEX),
    ("SMTPAcceptXAttr", R.ACCEPT_XATTR),
    ("SMTPAcceptXSysProbe", R.ACCEPT_XSYSPROBE),
)


def permission_tokens(rights: Rights) -> str:
    """``SMTPSubmit SMTPAcceptAnySender ...`` as the protocol log writes them."""
    return " ".join(token for token, right in _TOKENS if right is not None and right in rights)


def rights_to_mask(rights: Rights) -> int:
    """The PERMS=<uint> of XPROXYFROM: one bit per token position (exchsim's encoding)."""
    mask = 0
    for bit, (_, right) in enumerate(_TOKENS):
        if right is not None and right in rights:
            mask |= 1 << bit
    return mask


def mask_to_rights(mask: int) -> Rights:
    return frozenset(
        right
        for bit, (_, right) in enumerate(_TOKENS)
        if right is not None and mask & (1 << bit)
    )
