"""MAIL / RCPT / end-of-headers checks in Exchange's order (exchange.md §1.9) and their replies."""

from __future__ import annotations

import pytest

from exchsim.config.model import ReceiveConnector
from exchsim.policy import replies, rules
from exchsim.policy.permissions import (
    ANONYMOUS,
    EXTERNALLY_SECURED,
    Identity,
    Identity as Id,
    IdentityKind,
    Right,
    connector_acl,
    principals,
)
from tests.factories import connector, defaults, organization, server

ORG = organization()


def facts(conn: ReceiveConnector, identity: Id = ANONYMOUS, *, tls: bool = False,
          version: str = "15.2", extra: frozenset[Right] = frozenset()) -> rules.SessionFacts:
    mailbox = ORG.mailboxes[0] if identity.kind is IdentityKind.USER else None
    rights = connector_acl(conn, (), "CONTOSO").rights_for(principals(identity, "CONTOSO", mailbox))
    return rules.SessionFacts(ORG, server(version), conn, identity, rights | extra, tls, mailbox,
                              frozenset({"ex01.contoso.com"}))


def mail(arg: str) -> rules.MailCommand:
    parsed = rules.parse_mail(arg)
    assert isinstance(parsed, rules.MailCommand)
    return parsed


def rcpt(arg: str) -> rules.RcptCommand:
    parsed = rules.parse_rcpt(arg)
    assert isinstance(parsed, rules.RcptCommand)
    return parsed


@pytest.mark.parametrize(
    ("arg", "address"),
    [("FROM:<a@b.example>", "a@b.example"), ("FROM:a@b.example", "a@b.example"),
     ("from: <a@b.example> SIZE=10", "a@b.example"), ("FROM:<>", ""),
     ("FROM:<@relay.example:a@b.example>", "a@b.example")],
)
def test_mail_syntax_accepted(arg: str, address: str) -> None:
    assert mail(arg).address == address


@pytest.mark.parametrize(
    ("arg", "reply"),
    [("FROM:<not an address>", replies.INVALID_SENDER_ADDRESS),
     ("TO:<a@b.example>", replies.INVALID_ARGUMENTS),
     ("FROM:<a@b.example> FOO=1", replies.UNRECOGNIZED_PARAMETER),
     ("FROM:<a@b.example> BODY=9BIT", replies.UNSUPPORTED_BODY),
     ("FROM:<a@b.example> SIZE=x", replies.INVALID_ARGUMENTS), (None, replies.INVALID_ARGUMENTS)],
)
def test_mail_syntax_refused(arg: str | None, reply: replies.Reply) -> None:
    assert rules.parse_mail(arg) == reply


def test_rcpt_syntax() -> None:
    assert rules.parse_rcpt("TO:<>") == replies.INVALID_RECIPIENT_ADDRESS
    assert rules.parse_rcpt("TO:<a@b.example> XYZ=1") == replies.UNRECOGNIZED_PARAMETER
    assert rcpt("TO:<a@b.example> NOTIFY=NEVER").address == "a@b.example"


@pytest.mark.parametrize("params", [
    "NOTIFY=NEVER", "NOTIFY=success,failure,delay", "NOTIFY=DELAY",
    "ORCPT=rfc822;a+40b@c.example", "NOTIFY=FAILURE ORCPT=x-local;joe"])
def test_rcpt_dsn_parameters_accepted(params: str) -> None:
    assert rcpt(f"TO:<a@b.example> {params}").params


@pytest.mark.parametrize("params", [
    "NOTIFY=NEVER,SUCCESS", "NOTIFY=", "NOTIFY", "NOTIFY=SOMETIMES", "NOTIFY=SUCCESS,,DELAY",
    "ORCPT=a@b.example", "ORCPT=rfc822;", "ORCPT=;a@b.example", "ORCPT"])
def test_rcpt_dsn_parameters_malformed_are_invalid_arguments(params: str) -> None:
    # RFC 3461 §4.1, §4.2; the reply a bad RET gets (exchange.md §12.6).
    assert rules.parse_rcpt(f"TO:<a@b.example> {params}") == replies.INVALID_ARGUMENTS


def test_anonymous_mail_on_the_hub_is_not_authenticated_and_closes() -> None:
    decision = rules.check_mail(facts(defaults()["Default"]), mail("FROM:<a@b.example>"))
    assert decision.reply.render() == "530 5.7.1 Client was not authenticated"
    assert decision.reply.close


def test_authenticated_without_submit_gets_550_and_closes() -> None:
    conn = connector("NoUsers", PermissionGroups=["AnonymousUsers"])
    user = Identity(IdentityKind.USER, "alice@contoso.com", "06")
    decision = rules.check_mail(facts(conn, user), mail("FROM:<alice@contoso.com>"))
    assert decision.reply == replies.NO_SUBMIT_PERMISSION


def test_require_tls_refuses_mail_in_clear() -> None:
    conn = connector("TLS", PermissionGroups=["AnonymousUsers"], RequireTLS=True)
    assert rules.check_mail(facts(conn), mail("FROM:<a@b.example>")).reply.render() == (
        "451 5.7.3 STARTTLS is required to send mail")
    assert rules.check_mail(facts(conn, tls=True), mail("FROM:<a@b.example>")).accepted


def test_size_parameter_over_the_limit_unless_bypass() -> None:
    conn = connector("Small", PermissionGroups=["AnonymousUsers"], MaxMessageSize="1MB")
    big = mail("FROM:<a@b.example> SIZE=2000000")
    assert rules.check_mail(facts(conn), big).reply.render() == (
        "552 5.3.4 Message size exceeds fixed maximum message size")
    ea = connector("EA", AuthMechanism=["Tls", "ExternalAuthoritative"],
                   PermissionGroups=["ExchangeServers"], MaxMessageSize="1MB")
    assert rules.check_mail(facts(ea, EXTERNALLY_SECURED), big).accepted


@pytest.mark.parametrize(("version", "text"), [
    ("15.2", "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"),
    ("15.1", "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"),
    ("15.0", "550 5.7.1 Unable to relay"),
])
def test_anonymous_relay_is_refused(version: str, text: str) -> None:
    decision = rules.check_rcpt(facts(defaults()["Default Frontend"], version=version),
                                rcpt("TO:<user@fabrikam.example>"), 0)
    assert decision.reply.render() == text


def test_accepted_domains_and_wildcards_need_no_relay_right() -> None:
    f = facts(defaults()["Default Frontend"])
    assert rules.check_rcpt(f, rcpt("TO:<x@contoso.com>"), 0).accepted
    assert rules.check_rcpt(f, rcpt("TO:<x@relay.contoso.com>"), 0).accepted
    wild = organization(AcceptedDomains=[{"DomainName": "*.fabrikam.example"}])
    g = rules.SessionFacts(wild, server(), f.connector, ANONYMOUS, f.rights)
    assert rules.check_rcpt(g, rcpt("TO:<x@sub.fabrikam.example>"), 0).accepted
    assert not rules.check_rcpt(g, rcpt("TO:<x@fabrikam.test>"), 0).accepted


def test_relay_with_accept_any_recipient() -> None:
    f = facts(defaults()["Default Frontend"], extra=frozenset({Right.ACCEPT_ANY_RECIPIENT}))
    assert rules.check_rcpt(f, rcpt("TO:<user@fabrikam.example>"), 0).accepted


def test_too_many_recipients() -> None:
    conn = connector("Few", PermissionGroups=["AnonymousUsers"], MaxRecipientsPerMessage=2)
    f = facts(conn)
    assert rules.check_rcpt(f, rcpt("TO:<x@contoso.com>"), 1).accepted
    assert rules.check_rcpt(f, rcpt("TO:<x@contoso.com>"), 2).reply.render() == (
        "452 4.5.3 Too many recipients")


def test_header_checks() -> None:
    f = facts(connector("H", PermissionGroups=["AnonymousUsers"], MaxHeaderSize=1000,
                        MaxHopCount=3, MaxLocalHopCount=1))
    big = rules.check_headers(f, 2000, [], "a@b.example", [])
    assert big is not None and big.reply == replies.HEADER_TOO_BIG
    hops = rules.check_headers(f, 10, ["from a by b"] * 4, "a@b.example", [])
    assert hops is not None and hops.reply == replies.HOP_COUNT_EXCEEDED
    local = ["from x by ex01.contoso.com (1.2.3.4)"] * 2
    assert rules.check_headers(f, 10, local, "a@b.example", []) is not None
    assert rules.check_headers(f, 10, local[:1], "a@b.example", []) is None


def test_send_as() -> None:
    user = Identity(IdentityKind.USER, "alice@contoso.com", "06")
    f = facts(defaults()["Client Proxy"], user)
    assert rules.check_headers(f, 10, [], "alice@contoso.com", ["alice@contoso.com"]) is None
    denied = rules.check_headers(f, 10, [], "alice@contoso.com", ["bob@contoso.com"])
    assert denied is not None and denied.reply.render() == (
        "550 5.7.1 Client does not have permissions to send as this sender")
    anon_denied = rules.check_headers(facts(connector("NoSenders", PermissionGroups=["Partners"])),
                                      10, [], "ceo@contoso.com", [])
    assert anon_denied is not None and anon_denied.reply == replies.ANONYMOUS_SEND_AS_DENIED
    # Anonymous on Default Frontend holds both sender rights: spoofing the own domain passes.
    assert rules.check_headers(facts(defaults()["Default Frontend"]), 10, [],
                               "ceo@contoso.com", ["ceo@contoso.com"]) is None


def test_auth_as_categories() -> None:
    assert rules.auth_as(facts(defaults()["Default Frontend"])) == "Anonymous"
    user = Identity(IdentityKind.USER, "alice@contoso.com", "06")
    assert rules.auth_as(facts(defaults()["Client Frontend"], user)) == "Internal"
    ea = connector("EA", AuthMechanism=["Tls", "ExternalAuthoritative"],
                   PermissionGroups=["ExchangeServers"])
    assert rules.auth_as(facts(ea, EXTERNALLY_SECURED)) == "Internal"
    assert rules.auth_as(facts(ea, EXTERNALLY_SECURED), mail_auth_null=True) == "Anonymous"


def test_connection_limits() -> None:
    conn = connector("L", MaxInboundConnection=100, MaxInboundConnectionPerSource=3,
                     MaxInboundConnectionPercentagePerSource=2)
    assert rules.check_connection_limits(conn, 0, 0) is None
    per_source = rules.check_connection_limits(conn, 10, 2)  # 2% of 100 = 2 per source
    assert per_source is not None and per_source.reply.render() == (
        "421 4.3.2 The maximum number of concurrent connections has exceeded a limit, "
        "closing transmission channel")
    total = rules.check_connection_limits(conn, 100, 0)
    assert total is not None and total.reply.render().startswith(
        "421 4.3.2 The maximum number of concurrent server connections")
    unlimited = connector("U", MaxInboundConnection="unlimited",
                          MaxInboundConnectionPerSource="unlimited")
    assert rules.check_connection_limits(unlimited, 10**6, 10**6) is None


def test_message_partial_is_refused_only_at_the_top_level() -> None:
    refused = rules.check_content('Message/Partial; id="abc@x"; number=1; total=2')
    assert refused is not None
    assert refused.reply.render() == (
        "554 5.6.1 Messages of type message/partial are not supported")
    assert rules.check_content("message/partial (fragment)") is not None
    assert rules.check_content("multipart/mixed; boundary=x") is None
    assert rules.check_content("message/rfc822") is None
    assert rules.check_content(None) is None


def test_utf8_addresses_need_smtputf8_and_bytes_that_are_not_utf8_are_never_addresses() -> None:
    utf8 = "caf\u00e9@fabrikam.example"
    not_utf8 = b"bad\xff@fabrikam.example".decode("utf-8", "surrogateescape")  # as the session
    assert mail(f"FROM:<{utf8}> SMTPUTF8").address == utf8
    assert rules.parse_mail(f"FROM:<{utf8}>") == replies.INVALID_SENDER_ADDRESS
    assert rules.parse_mail(f"FROM:<{not_utf8}> SMTPUTF8") == replies.INVALID_SENDER_ADDRESS
    assert rules.parse_rcpt(f"TO:<{utf8}>") == replies.INVALID_RECIPIENT_ADDRESS
    parsed = rules.parse_rcpt(f"TO:<{utf8}>", smtputf8=True)
    assert isinstance(parsed, rules.RcptCommand) and parsed.address == utf8
    assert rules.parse_rcpt(f"TO:<{not_utf8}>", smtputf8=True) == (
        replies.INVALID_RECIPIENT_ADDRESS)


@pytest.mark.parametrize("control", ["\x00", "\x01", "\x09", "\x0b", "\x1b", "\x7f", "\x85", "\x9f"])
def test_control_characters_are_in_no_address(control: str) -> None:
    # Issue 7, finding 2: a NUL in a sender address was accepted, and the bounce to it crashed
    # the delivery agent on every retry.
    for address in (f"a{control}b@fabrikam.example", f'"a{control}b"@fabrikam.example',
                    f"ab@fabri{control}kam.example"):
        assert rules.parse_mail(f"FROM:<{address}>") == replies.INVALID_SENDER_ADDRESS
        assert rules.parse_rcpt(f"TO:<{address}>", smtputf8=True) == (
            replies.INVALID_RECIPIENT_ADDRESS)
    # printable ASCII and UTF-8 letters stay valid
    assert isinstance(rules.parse_mail("FROM:<a/b+c@fabrikam.example>"), rules.MailCommand)
    assert isinstance(rules.parse_rcpt("TO:<jörg@fabrikam.example>", smtputf8=True),
                      rules.RcptCommand)


def test_organization_size_limits_pick_the_recipients_to_refuse() -> None:
    # Issue 7, finding 3: MaxReceiveSize / MaxSendSize of TransportConfig were not enforced.
    from exchsim.config.model import TransportConfig

    org = organization(TransportConfig=TransportConfig.model_validate(
        {"MaxReceiveSize": "1MB", "MaxSendSize": "2MB"}))
    facts = rules.SessionFacts(org=org, server=server(), connector=defaults()["Default"],
                               identity=ANONYMOUS, rights=frozenset())
    mb = 1024 * 1024
    outside, inside = "someone@fabrikam.example", "alice@contoso.com"
    assert rules.over_organization_limits(facts, outside, [inside], mb) == []
    assert rules.over_organization_limits(facts, outside, [inside, "x@fabrikam.example"],
                                          mb + 1) == [inside]
    assert rules.over_organization_limits(facts, inside, ["x@fabrikam.example"], mb + 1) == []
    assert rules.over_organization_limits(facts, inside, ["x@fabrikam.example", inside],
                                          2 * mb + 1) == ["x@fabrikam.example", inside]
