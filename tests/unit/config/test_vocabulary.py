"""The words config, policy and the daemon share: rights, principals, domains, mailbox names."""

from __future__ import annotations

import datetime

from exchsim.config.model import AcceptedDomain, AuthMechanism, Mailbox, Organization
from exchsim.config.syntax import format_endpoint, format_flags, format_timespan
from exchsim.config.vocabulary import (
    EXTENDED_RIGHTS,
    Right,
    known_principals,
    logon_names,
    logon_table,
    match_accepted_domain,
    principal_names,
)
from exchsim.policy import permissions, rules


def domains(*names: str) -> list[AcceptedDomain]:
    return [AcceptedDomain.model_validate({"DomainName": n}) for n in names]


def test_policy_uses_the_same_words() -> None:
    assert permissions.Right is Right
    assert rules.match_accepted_domain is match_accepted_domain
    assert EXTENDED_RIGHTS[0] == "ms-Exch-SMTP-Submit" and len(EXTENDED_RIGHTS) == 19


def test_most_specific_accepted_domain_wins() -> None:
    listed = domains("*.contoso.com", "sales.contoso.com", "*.sales.contoso.com")
    assert match_accepted_domain(listed, "Sales.Contoso.com") is listed[1]
    assert match_accepted_domain(listed, "eu.sales.contoso.com") is listed[2]
    assert match_accepted_domain(listed, "contoso.com") is listed[0]
    assert match_accepted_domain(listed, "fabrikam.com") is None


def test_the_names_of_a_mailbox() -> None:
    mailbox = Mailbox.model_validate({
        "PrimarySmtpAddress": "alice@contoso.com", "UserPrincipalName": "alice@corp.contoso.com",
        "EmailAddresses": ["smtp:a@contoso.com"], "Server": "EX01",
    })
    assert principal_names(mailbox, "CONTOSO") == (
        "CONTOSO\\alice", "alice@contoso.com", "alice@corp.contoso.com",
    )
    assert logon_names(mailbox, "CONTOSO") == (
        "alice@contoso.com", "a@contoso.com", "alice", "CONTOSO\\alice", "alice@corp.contoso.com",
    )
    assert mailbox.user_name == "alice@corp.contoso.com"
    org = Organization.model_validate({
        "Name": "Contoso", "AcceptedDomains": [{"DomainName": "contoso.com"}],
        "Mailboxes": [mailbox.model_dump(by_alias=True)],
    })
    assert logon_table(org)["contoso\\alice"] == mailbox
    assert set(known_principals("CONTOSO", [mailbox])) >= {
        "contoso\\alice", "contoso\\exchange servers", "nt authority\\anonymous logon",
    }


def test_shared_formatters() -> None:
    assert format_endpoint("::1", 25) == "[::1]:25"
    assert format_endpoint("127.0.0.1", 25) == "127.0.0.1:25"
    assert format_timespan(datetime.timedelta(seconds=5), days=True) == "0.00:00:05"
    assert format_timespan(datetime.timedelta(seconds=5)) == "00:00:05"
    assert format_flags({AuthMechanism.TLS, AuthMechanism.NONE}, AuthMechanism) == "None, Tls"
    assert format_flags(set(), AuthMechanism) == "None"
