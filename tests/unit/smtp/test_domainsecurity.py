"""Domain Security, TlsDomainCapabilities and the required client certificate in the session
core (exchange.md §4.2, §4.4, §4.9), with real certificates judged by the real validator."""

from __future__ import annotations

import dataclasses
import datetime

from exchsim.config.load import load_config_text
from exchsim.policy.permissions import IdentityKind, Right
from exchsim.tls.validation import ChainVerdict, validate_chain
from tests.certfactory import DAY, T0, lab_pki, make_ca, make_leaf
from tests.unit.smtp.harness import LAB_YAML, TLS, Runtime, Transcript

SECOND = datetime.timedelta(seconds=1)
PKI = lab_pki()
PARTNER = PKI.leaf("mail.partner.example", sans=["mail.partner.example", "partner.example"])
EXPIRED = PKI.leaf("partner.example", not_before=T0 - 400 * DAY, not_after=T0 - SECOND)


def judge(chain: list[bytes]) -> ChainVerdict:
    return validate_chain(chain, (PKI.root.cert,), T0, PKI.crls())


def lab(extra_connectors: str = "", secure: str = "[partner.example]") -> Runtime:
    text = LAB_YAML.replace(
        "TransportConfig: {MaxReceiveSize: 10MB, MaxSendSize: 10MB}",
        f"TransportConfig: {{MaxReceiveSize: 10MB, MaxSendSize: 10MB, "
        f"TLSReceiveDomainSecureList: {secure}}}")
    if extra_connectors:
        text += "\nReceiveConnectors:\n" + extra_connectors.strip("\n") + "\n"
    return Runtime(load_config_text(text, "lab.yaml"))


def session(runtime: Runtime, chain: list[bytes] | None, port: int = 25,
            peer: str = "127.0.0.1") -> Transcript:
    verdict = judge(chain) if chain else None
    tls = dataclasses.replace(TLS, peer_der=chain[0] if chain else None,
                              peer_chain=tuple(chain or ()), verdict=verdict)
    t = Transcript(runtime, port, peer, tls=tls)
    t.say("EHLO partner.example")
    t.say("STARTTLS")
    t.say("EHLO partner.example")
    return t


def info_lines(runtime: Runtime) -> list[str]:
    return [data or context for kind, data, context in runtime.logs[-1].events if kind == "*"]


def test_valid_partner_becomes_the_partner() -> None:
    runtime = lab()
    t = session(runtime, PKI.chain(PARTNER))
    out = t.say("MAIL FROM:<user@partner.example>", "RCPT TO:<alice@contoso.com>", "DATA")
    assert out.startswith("250 2.1.0 Sender OK")
    t.say("Subject: hi", "", "hello", ".")
    message = t.delivered[0]
    identity = message.context.identity
    assert (identity.kind, identity.name, identity.mechanism) == (
        IdentityKind.PARTNER, "partner.example", "02")
    assert message.context.rights == {Right.SUBMIT, Right.ACCEPT_HEADERS_ROUTING}
    lines = info_lines(runtime)
    assert "Client certificate chain validation status: 'Valid'" in lines
    assert "TlsDomainCapabilities='None'; Status='DomainMismatch'" in lines
    remote = [d for k, d, c in runtime.logs[-1].events if c.startswith("Remote certificate")]
    assert remote and remote[0].startswith(" CN=mail.partner.example CN=Exchsim Test Issuing CA ")


def test_no_tls_with_starttls_offered() -> None:
    t = Transcript(lab(), 25)
    t.say("EHLO partner.example")
    assert t.say("MAIL FROM:<user@partner.example>") == "530 5.7.1 Not authenticated\r\n"


class NoCertificate(Runtime):
    def has_starttls_certificate(self, connector: object) -> bool:
        return False


def test_no_tls_and_no_starttls_on_the_connector() -> None:
    runtime = NoCertificate(lab().lab)
    t = Transcript(runtime, 25)
    assert "STARTTLS" not in t.say("EHLO partner.example")
    assert t.say("MAIL FROM:<user@partner.example>") == (
        "454 4.7.0 Temporary authentication failure\r\n")


def test_tls_without_a_certificate() -> None:
    runtime = lab()
    t = session(runtime, None)
    assert t.say("MAIL FROM:<user@partner.example>") == "530 5.7.1 Not authenticated\r\n"
    lines = info_lines(runtime)
    assert "Client certificate chain validation status: 'EmptyCertificate'" in lines
    assert "TlsDomainCapabilities='None'; Status='NoRemoteCertificate'" in lines


def test_bad_certificates_get_certificate_validation_failure() -> None:
    other = make_ca("Nobody Trusts This CA", slot=3)
    cases = {
        "UntrustedTime": PKI.chain(EXPIRED),
        "UntrustedRoot": [make_leaf(other, "partner.example").der, other.der],
        "Revoked": PKI.chain(PARTNER),
        "SubjectMismatch": PKI.chain(PKI.leaf("mail.fabrikam.example")),
    }
    for status, chain in cases.items():
        runtime = lab()
        crls = PKI.crls([PARTNER]) if status == "Revoked" else PKI.crls()
        verdict = validate_chain(chain, (PKI.root.cert,), T0, crls)
        tls = dataclasses.replace(TLS, peer_der=chain[0], peer_chain=tuple(chain), verdict=verdict)
        t = Transcript(runtime, 25, tls=tls)
        t.say("EHLO x", "STARTTLS")
        t.say("EHLO x")
        reply = t.say("MAIL FROM:<user@partner.example>")
        assert reply == "454 4.7.5 Certificate validation failure\r\n", status
        assert verdict.status_for("partner.example") == status
        # A sender outside the list is not concerned by the same certificate.
        assert t.say("MAIL FROM:<user@fabrikam.example>").startswith("250 2.1.0"), status


def test_domain_secure_disabled_on_the_connector() -> None:
    runtime = lab("  - {Name: Default Frontend EX01, Server: EX01, DomainSecureEnabled: false}")
    t = session(runtime, PKI.chain(PARTNER))
    assert t.say("MAIL FROM:<user@partner.example>") == (
        "451 4.7.3 The admin has temporarily disallowed this secure domain\r\n")


def test_the_list_is_exact() -> None:
    t = session(lab(), None)
    assert t.say("MAIL FROM:<user@sub.partner.example>").startswith("250 2.1.0")


def test_tls_domain_capabilities_granted_to_a_matching_certificate() -> None:
    runtime = lab("  - {Name: Default Frontend EX01, Server: EX01, TlsDomainCapabilities: "
                  "['partner.example:AcceptOrgHeaders,AcceptOorgProtocol']}", secure="[]")
    t = session(runtime, PKI.chain(PARTNER))
    assert ("TlsDomainCapabilities='AcceptOorgProtocol, AcceptOrgHeaders'; Status='Success'; "
            "Domain='partner.example'") in info_lines(runtime)
    assert Right.ACCEPT_HEADERS_ORGANIZATION in t.core.rights
    # Another certificate gets nothing.
    runtime = lab("  - {Name: Default Frontend EX01, Server: EX01, TlsDomainCapabilities: "
                  "['fabrikam.example:AcceptOrgHeaders']}", secure="[]")
    t = session(runtime, PKI.chain(PARTNER))
    assert Right.ACCEPT_HEADERS_ORGANIZATION not in t.core.rights
    assert "TlsDomainCapabilities='None'; Status='DomainMismatch'" in info_lines(runtime)


HUB_MTLS = """
  - {Name: Hub mTLS EX01, Server: EX01, TransportRole: HubTransport, Usage: Custom,
     Bindings: ["0.0.0.0:2525"], RemoteIPRanges: ["127.0.24.0/24"], AuthMechanism: [Tls],
     PermissionGroups: [ExchangeServers], ExchsimRequireClientCertificate: relay.contoso.com}
"""


def test_required_client_certificate_grants_relay() -> None:
    relay = PKI.leaf("relay.contoso.com")
    runtime = lab(HUB_MTLS, secure="[]")
    t = session(runtime, PKI.chain(relay), port=2525, peer="127.0.24.5")
    assert t.say("MAIL FROM:<app@contoso.com>").startswith("250 2.1.0")
    assert t.say("RCPT TO:<user@fabrikam.example>").startswith("250 2.1.5")
    assert t.core.identity.kind is IdentityKind.EXTERNALLY_SECURED
    for chain, reply in [
        (None, "530 5.7.1 Not authenticated"),
        (PKI.chain(PARTNER), "454 4.7.5 Certificate validation failure"),
    ]:
        t = session(lab(HUB_MTLS, secure="[]"), chain, port=2525, peer="127.0.24.5")
        assert t.say("MAIL FROM:<app@contoso.com>") == reply + "\r\n"


def test_no_tls_capabilities_apply_without_tls() -> None:
    t = Transcript(lab(secure="[]"), 2525, peer="127.0.0.9")
    t.say("EHLO app.example")
    assert t.say("MAIL FROM:<a@contoso.com>").startswith("530 5.7.1 Client was not authenticated")
    runtime = lab("  - {Name: Default EX01, Server: EX01, TlsDomainCapabilities: "
                  "['NO-TLS:AllowSubmit']}", secure="[]")
    t = Transcript(runtime, 2525, peer="127.0.0.9")
    t.say("EHLO app.example")
    assert t.say("MAIL FROM:<a@contoso.com>").startswith("250 2.1.0")
