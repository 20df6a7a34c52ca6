"""EHLO keyword sets of the setup connectors, as exchange.md §1.5 lists them (literal copies)."""

from __future__ import annotations

import pytest

from exchsim.config.model import ServerRole, TransportConfig
from exchsim.policy.ehlo import EhloContext, keywords
from tests.factories import connector, defaults

DEFAULT_FRONTEND_2016 = [
    "SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "X-ANONYMOUSTLS",
    "AUTH NTLM", "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "XRDST",
]
DEFAULT_FRONTEND_2019 = [*DEFAULT_FRONTEND_2016[:-1], "SMTPUTF8", "XRDST"]
DEFAULT_FRONTEND_2019_TLS = [
    "SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "AUTH NTLM LOGIN",
    "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8", "XRDST",
]
CLIENT_FRONTEND_2019 = [
    "SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "AUTH GSSAPI NTLM",
    "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8",
]
CLIENT_FRONTEND_2019_TLS = [
    "SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "AUTH GSSAPI NTLM LOGIN",
    "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8",
]
HUB_DEFAULT_2016 = [
    "SIZE", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "X-ANONYMOUSTLS", "AUTH NTLM",
    "X-EXPS GSSAPI NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "XEXCH50", "XRDST",
    "XSHADOWREQUEST",
]
EDGE_2016 = [
    "SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "X-ANONYMOUSTLS",
    "X-EXPS NTLM", "8BITMIME", "BINARYMIME", "CHUNKING", "XEXCH50", "XSHADOW",
]
CUSTOM_RELAY_2019 = [
    "SIZE 37748736", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "8BITMIME",
    "BINARYMIME", "CHUNKING", "SMTPUTF8",
]


def kw(name: str, version: str, *, tls: bool = False, anonymous_tls: bool = False,
       role: ServerRole = ServerRole.MAILBOX) -> list[str]:
    c = defaults(role=role)[name]
    return keywords(EhloContext(c, version, TransportConfig(), tls_active=tls,
                                anonymous_tls=anonymous_tls))


@pytest.mark.parametrize(
    ("name", "version", "tls", "expected"),
    [
        ("Default Frontend", "15.1", False, DEFAULT_FRONTEND_2016),
        ("Default Frontend", "15.2", False, DEFAULT_FRONTEND_2019),
        ("Default Frontend", "15.2", True, DEFAULT_FRONTEND_2019_TLS),
        ("Client Frontend", "15.2", False, CLIENT_FRONTEND_2019),
        ("Client Frontend", "15.2", True, CLIENT_FRONTEND_2019_TLS),
        ("Client Frontend", "15.1", False, [k for k in CLIENT_FRONTEND_2019 if k != "SMTPUTF8"]),
        ("Default", "15.1", False, HUB_DEFAULT_2016),
    ],
)
def test_setup_connectors_match_the_observed_sets(
    name: str, version: str, tls: bool, expected: list[str]
) -> None:
    assert kw(name, version, tls=tls) == expected


def test_edge_internal_connector() -> None:
    assert kw("Default internal receive connector", "15.1", role=ServerRole.EDGE) == EDGE_2016
    after = kw("Default internal receive connector", "15.1", tls=True, role=ServerRole.EDGE)
    assert after == [k for k in EDGE_2016 if k not in ("STARTTLS", "X-ANONYMOUSTLS")]


def test_custom_anonymous_relay_connector() -> None:
    relay = connector("Relay", TransportRole="FrontendTransport", AuthMechanism=["Tls"],
                      PermissionGroups=["AnonymousUsers"])
    assert keywords(EhloContext(relay, "15.2", TransportConfig())) == CUSTOM_RELAY_2019


def test_externalauthoritative_shows_no_auth_line() -> None:
    c = connector("EA", TransportRole="FrontendTransport",
                  AuthMechanism=["Tls", "ExternalAuthoritative"], PermissionGroups=["ExchangeServers"])
    words = keywords(EhloContext(c, "15.2", TransportConfig()))
    assert not any(w.startswith("AUTH") for w in words)


def test_inside_x_anonymoustls_the_hub_offers_exchangeauth_and_proxy_verbs() -> None:
    words = kw("Default", "15.1", tls=True, anonymous_tls=True)
    assert "X-EXPS EXCHANGEAUTH GSSAPI NTLM" in words
    assert words[words.index("X-EXPS EXCHANGEAUTH GSSAPI NTLM") + 1] == "X-EXCHANGEAUTH SHA256"
    assert "AUTH NTLM LOGIN" in words
    assert "XPROXY" in words and "XPROXYFROM" in words
    assert "STARTTLS" not in words and "X-ANONYMOUSTLS" not in words


def test_mailbox_delivery_offers_xsessionparams_only_inside_anonymous_tls() -> None:
    assert "XSESSIONPARAMS" not in kw("Mailbox Delivery", "15.2")
    assert "XSESSIONPARAMS" in kw("Mailbox Delivery", "15.2", tls=True, anonymous_tls=True)


def test_switches_remove_their_keywords() -> None:
    c = connector("Sw", SizeEnabled="Disabled", PipeliningEnabled=False, ChunkingEnabled=False,
                  BinaryMimeEnabled=False, EnhancedStatusCodesEnabled=False,
                  DeliveryStatusNotificationEnabled=False, EightBitMimeEnabled=False)
    assert keywords(EhloContext(c, "15.2", TransportConfig())) == ["STARTTLS"]


def test_no_certificate_means_no_starttls() -> None:
    c = defaults()["Default Frontend"]
    words = keywords(EhloContext(c, "15.2", TransportConfig(), has_certificate=False))
    assert "STARTTLS" not in words and "X-ANONYMOUSTLS" in words
