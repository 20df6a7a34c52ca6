"""Permission groups, ADPermission allow/deny entries and protocol-log tokens (exchange.md §3.6)."""

from __future__ import annotations

from exchsim.config.model import ADPermission
from exchsim.policy.permissions import (
    ANONYMOUS,
    EXTERNALLY_SECURED,
    Identity,
    IdentityKind,
    Right,
    connector_acl,
    mask_to_rights,
    permission_tokens,
    principals,
    rights_to_mask,
)
from tests.factories import connector, defaults, organization


def rights(conn, identity, perms=(), mailbox=None):  # type: ignore[no-untyped-def]
    acl = connector_acl(conn, perms, "CONTOSO")
    return acl.rights_for(principals(identity, "CONTOSO", mailbox))


def test_anonymous_on_default_frontend_logs_exactly_the_observed_tokens() -> None:
    got = rights(defaults()["Default Frontend"], ANONYMOUS)
    assert permission_tokens(got) == (
        "SMTPSubmit SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender AcceptRoutingHeaders"
    )


def test_anonymous_on_the_hub_gets_nothing() -> None:
    assert rights(defaults()["Default"], ANONYMOUS) == frozenset()


def test_exchange_users_rights_after_auth() -> None:
    mailbox = organization().mailboxes[0]
    user = Identity(IdentityKind.USER, "alice@contoso.com", "06")
    got = rights(defaults()["Client Frontend"], user, mailbox=mailbox)
    assert got == {Right.SUBMIT, Right.ACCEPT_ANY_RECIPIENT, Right.BYPASS_ANTI_SPAM,
                   Right.ACCEPT_HEADERS_ROUTING}


def test_exchange_servers_have_every_header_right_and_secured_servers_do_not() -> None:
    conn = connector("EA", AuthMechanism=["Tls", "ExternalAuthoritative"],
                     PermissionGroups=["ExchangeServers"])
    server = rights(conn, Identity(IdentityKind.EXCHANGE_SERVER, "ex02.contoso.com"))
    secured = rights(conn, EXTERNALLY_SECURED)
    assert Right.ACCEPT_HEADERS_ORGANIZATION in server
    assert Right.ACCEPT_XPROXYFROM in server
    assert Right.ACCEPT_HEADERS_ORGANIZATION not in secured
    assert Right.ACCEPT_XPROXYFROM not in secured
    assert {Right.ACCEPT_ANY_RECIPIENT, Right.BYPASS_MESSAGE_SIZE_LIMIT,
            Right.ACCEPT_AUTHENTICATION_FLAG} <= secured


def test_adpermission_allow_grants_and_deny_wins() -> None:
    conn = connector("Anonymous Relay EX01", PermissionGroups=["AnonymousUsers"])
    allow = ADPermission(Identity="EX01\\Anonymous Relay EX01",
                         User="NT AUTHORITY\\ANONYMOUS LOGON",
                         ExtendedRights=("ms-Exch-SMTP-Accept-Any-Recipient",))
    got = rights(conn, ANONYMOUS, [allow])
    assert Right.ACCEPT_ANY_RECIPIENT in got
    deny = ADPermission(Identity="ex01\\anonymous relay ex01",
                        User="NT AUTHORITY\\ANONYMOUS LOGON",
                        ExtendedRights=("ms-Exch-SMTP-Submit", "ms-Exch-SMTP-Accept-Any-Recipient"),
                        Deny=True)
    got = rights(conn, ANONYMOUS, [allow, deny])
    assert Right.SUBMIT not in got and Right.ACCEPT_ANY_RECIPIENT not in got
    assert Right.ACCEPT_HEADERS_ROUTING in got


def test_adpermission_on_another_connector_does_not_apply() -> None:
    conn = connector("Relay", PermissionGroups=["AnonymousUsers"])
    other = ADPermission(Identity="EX01\\Other", User="NT AUTHORITY\\ANONYMOUS LOGON",
                         ExtendedRights=("ms-Exch-SMTP-Accept-Any-Recipient",))
    assert Right.ACCEPT_ANY_RECIPIENT not in rights(conn, ANONYMOUS, [other])


def test_rights_mask_round_trips() -> None:
    for conn in defaults().values():
        for identity in (ANONYMOUS, Identity(IdentityKind.EXCHANGE_SERVER, "x")):
            got = rights(conn, identity)
            assert mask_to_rights(rights_to_mask(got)) == got
