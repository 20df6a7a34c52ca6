"""TlsDomainCapabilities and the domain secure lists in the config (exchange.md §4.2, §4.4)."""

from __future__ import annotations

import pytest

from exchsim.config.capabilities import Capability, parse_domain_capabilities
from exchsim.config.issues import ConfigError
from exchsim.config.load import load_config_text
from tests.unit.smtp.harness import LAB_YAML


@pytest.mark.parametrize(("text", "domain", "caps"), [
    ("contoso.com:AcceptCloudServicesMail", "contoso.com", {Capability.ACCEPT_CLOUD_SERVICES_MAIL}),
    ("*.Contoso.com:acceptorgheaders, AllowSubmit", "*.contoso.com",
     {Capability.ACCEPT_ORG_HEADERS, Capability.ALLOW_SUBMIT}),
    ("no-tls:AcceptOorgProtocol", "NO-TLS", {Capability.ACCEPT_OORG_PROTOCOL}),
    ("fabrikam.com:None", "fabrikam.com", set()),
])
def test_parse(text: str, domain: str, caps: set[Capability]) -> None:
    entry = parse_domain_capabilities(text)
    assert entry.domain == domain and entry.capabilities == caps


@pytest.mark.parametrize(("text", "why"), [
    ("contoso.com", "expected '<domain>:<capability>"),
    ("contoso.com:", "expected '<domain>:<capability>"),
    ("contoso.com:AcceptEverything", "'AcceptEverything' is not a capability; allowed: None,"),
    ("bad domain:AllowSubmit", "is not a domain name"),
    ("contoso.com:None,AllowSubmit", "None cannot be combined"),
])
def test_parse_errors(text: str, why: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_domain_capabilities(text)
    assert why in str(raised.value)


def _load(transport: str = "", connector: str = "") -> str:
    text = LAB_YAML
    if transport:
        text = text.replace("TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}",
                            "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB, "
                            + transport + "}")
    if connector:
        text += "\nReceiveConnectors:\n  - " + connector + "\n"
    try:
        load_config_text(text, "lab.yaml")
    except ConfigError as exc:
        return str(exc)
    return ""


def test_domain_secure_lists_are_exact_domains() -> None:
    assert _load("TLSReceiveDomainSecureList: [partner.example]") == ""
    error = _load("TLSReceiveDomainSecureList: ['*.partner.example']")
    assert "TLSReceiveDomainSecureList[0]" in error and "wildcards are not allowed" in error
    assert "wildcards are not allowed" in _load("TLSSendDomainSecureList: ['*']")


def test_connector_keys() -> None:
    name = "{Name: Default Frontend EX01, Server: EX01, "
    assert _load(connector=name + "TlsDomainCapabilities: 'contoso.com:AllowSubmit'}") == ""
    error = _load(connector=name + "TlsDomainCapabilities: ['a.example:AllowSubmit', "
                  "'A.example:AcceptOrgHeaders']}")
    assert "a.example is named twice" in error
    error = _load(connector=name + "AuthMechanism: [None], DomainSecureEnabled: false, "
                  "ExchsimRequireClientCertificate: relay.contoso.com}")
    assert "ExchsimRequireClientCertificate" in error and "it needs Tls" in error
    assert "expected a host name" in _load(
        connector=name + "ExchsimRequireClientCertificate: 'not a name'}")
